#pragma once
// Pure parts of rate limiting, unit-tested: which rate applies to a request, the bucket key,
// the client-address key and the anomaly detector.
#include <optional>
#include <string>
#include <string_view>

#include "ratelimit/gcra.hpp"
#include "ratelimit/policies.hpp"

namespace hsea::ratelimit {

// The rule that applies and where its rate came from.
struct Resolved {
  std::string rule;
  Per per = Per::kTenant;
  Rate rate;
  std::string_view source;  // "route", "plan", "default" or "override"
};

// The documented resolution order, each later step replacing what the earlier gave:
//  1. the per-route rule: the route's Limit (its own rate when it sets one), or the default
//     rule "api" (per tenant) for an authenticated tenant route;
//  2. the plan rule: a rule without its own rate takes the tenant's plan rate (requests per
//     second and burst), or the settings' default when the plan sets none;
//  3. the override: an operator's (or an enterprise contract's) rate for this tenant and rule
//     replaces whatever came before.
Resolved resolve(const Limit& rule, const std::optional<Rate>& plan, const Rate& fallback,
                 const std::optional<Rate>& override_rate);

// The default rule of authenticated tenant routes that declare none.
Limit default_rule();

// Where a bucket lives. Every bucket of a tenant carries the tenant in a Redis Cluster hash tag
// ("rl:{t:<tenant>}:<rule>:<kind>:<id>"), so one tenant's buckets share a slot; buckets of
// requests without a tenant are tagged by what they count ("rl:{ip:<address>}:<rule>").
std::string bucket_key(std::string_view tenant, std::string_view rule, std::string_view kind,
                       std::string_view id);

// The key an address counts under: IPv4 as it is, IPv6 as its /64 ("2001:db8:1:2::/64", the
// block one host usually holds), IPv4-mapped IPv6 as the IPv4 address; anything else as given.
std::string client_key(const std::string& ip);

std::string_view per_name(Per per);

// Flags a series (a tenant's requests per interval) that leaves its own trailing baseline: an
// exponentially weighted mean and variance (weight `alpha` per observation); an observation
// further than `k` deviations (and 50% of the mean) from the mean, above `min_rate`, after
// `warmup` observations, is anomalous. The baseline then still learns it, more slowly (a
// lasting change becomes the new normal instead of alerting forever).
class AnomalyDetector {
 public:
  explicit AnomalyDetector(double alpha = 0.2, double k = 4.0, double min_rate = 10, int warmup = 5)
      : alpha_(alpha), k_(k), min_rate_(min_rate), warmup_(warmup) {}
  // Feeds one interval's rate; true when it is anomalous.
  bool observe(double rate);
  double mean() const { return mean_; }
  double deviation() const;

 private:
  double alpha_, k_, min_rate_;
  int warmup_;
  int seen_ = 0;
  double mean_ = 0;
  double variance_ = 0;
};

}  // namespace hsea::ratelimit
