#include "ratelimit/rules.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>
#include <iterator>

namespace hsea::ratelimit {

Limit default_rule() { return Limit{.rule = "api", .per = Per::kTenant}; }

Resolved resolve(const Limit& rule, const std::optional<Rate>& plan, const Rate& fallback,
                 const std::optional<Rate>& override_rate) {
  Resolved r{.rule = rule.rule, .per = rule.per};
  if (rule.limit > 0) {
    r.rate = Rate{rule.limit, std::max(1, rule.period_seconds), rule.burst};
    r.source = "route";
  } else if (plan && plan->limit > 0) {
    r.rate = *plan;
    r.source = "plan";
  } else {
    r.rate = fallback;
    r.source = "default";
  }
  if (override_rate && override_rate->limit > 0) {
    r.rate = *override_rate;
    r.source = "override";
  }
  return r;
}

std::string bucket_key(std::string_view tenant, std::string_view rule, std::string_view kind,
                       std::string_view id) {
  std::string key;
  key.reserve(48 + tenant.size() + rule.size() + kind.size() + id.size());  // + the rate
  if (!tenant.empty()) {
    key.append("rl:{t:").append(tenant).append("}:").append(rule);
    key.append(":").append(kind).append(":").append(id);
  } else {
    key.append("rl:{").append(kind).append(":").append(id).append("}:").append(rule);
  }
  return key;
}

std::string client_key(const std::string& ip) {
  in6_addr v6{};
  if (inet_pton(AF_INET6, ip.c_str(), &v6) != 1) return ip;  // IPv4, or not an address
  char text[INET6_ADDRSTRLEN] = {};
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    inet_ntop(AF_INET, &v6.s6_addr[12], text, sizeof text);
    return text;
  }
  std::fill(std::begin(v6.s6_addr) + 8, std::end(v6.s6_addr), 0);
  inet_ntop(AF_INET6, &v6, text, sizeof text);
  return std::string(text) + "/64";
}

std::string_view per_name(Per per) {
  switch (per) {
    case Per::kTenant:
      return "tenant";
    case Per::kPrincipal:
      return "principal";
    case Per::kIp:
      return "ip";
  }
  return "tenant";
}

double AnomalyDetector::deviation() const { return std::sqrt(std::max(0.0, variance_)); }

bool AnomalyDetector::observe(double rate) {
  double diff = rate - mean_;
  bool anomalous = seen_ >= warmup_ && std::max(rate, mean_) >= min_rate_ &&
                   std::abs(diff) > k_ * deviation() && std::abs(diff) > 0.5 * mean_;
  // The first observations set the baseline at full weight; an anomaly is learnt at a quarter
  // of the weight.
  double a = seen_ == 0 ? 1.0 : (anomalous ? alpha_ / 4 : alpha_);
  double step = a * diff;
  mean_ += step;
  variance_ = (1 - a) * (variance_ + diff * step);
  ++seen_;
  return anomalous;
}

}  // namespace hsea::ratelimit
