// The rate-limit middleware, its settings and its registration.
#include <fmt/format.h>

#include <arpa/inet.h>
#include <boost/asio/awaitable.hpp>

#include <cctype>
#include <cmath>
#include <iterator>
#include <sstream>
#include <unordered_set>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "http/context.hpp"
#include "http/middleware.hpp"
#include "http/problem.hpp"
#include "identity/access.hpp"
#include "ratelimit/internal.hpp"
#include "ratelimit/ratelimit.hpp"
#include "runtime/registrar.hpp"

namespace hsea::ratelimit {
namespace {

using boost::asio::awaitable;
using http::RequestContext;
using http::Response;

// Each entry must be an id (a UUID) or a client address; anything else is a typo that would
// silently exempt nobody.
std::optional<std::string> check_exempt(std::string& value) {
  std::stringstream in(value);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    std::string v = item.substr(b, e - b + 1);
    in6_addr addr{};
    if (core::is_uuid(v) || inet_pton(AF_INET, v.c_str(), &addr) == 1 ||
        inet_pton(AF_INET6, v.c_str(), &addr) == 1) {
      continue;
    }
    return "each entry must be a tenant, user or API-key id or a client address: " + v;
  }
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "ratelimit",
    {core::bool_setting(&Settings::enabled, "HSEA_RATE_LIMIT_ENABLED", "true",
                        "apply rate limits to API routes"),
     core::int_setting(&Settings::default_rps, "HSEA_RATE_LIMIT_RPS", "100", 1, 10000000,
                       "requests per second of a tenant when neither plan nor override sets one"),
     core::int_setting(&Settings::default_burst, "HSEA_RATE_LIMIT_BURST", "200", 1, 100000000,
                       "requests at once of a tenant with the default rate"),
     core::string_setting(&Settings::exempt, "HSEA_RATE_LIMIT_EXEMPT", "",
                          "never limited: comma-separated tenant, user and API-key ids and "
                          "client addresses",
                          check_exempt),
     core::int_setting(&Settings::alert_threshold, "HSEA_RATE_LIMIT_ALERT_THRESHOLD", "1000", 1,
                       1000000000, "limited requests of one tenant per flush that raise an alert"),
     core::int_setting(&Settings::flush_seconds, "HSEA_RATE_LIMIT_FLUSH_SECONDS", "60", 1, 3600,
                       "how often limited-request counts are written and the detector fed"),
     core::int_setting(&Settings::override_refresh_seconds,
                       "HSEA_RATE_LIMIT_OVERRIDE_REFRESH_SECONDS", "5", 1, 3600,
                       "how soon a rate-limit override made on another node applies")}};

struct State {
  const Settings* settings = nullptr;
  std::unordered_set<std::string> exempt;
  std::mutex overrides_mutex;
  std::shared_ptr<const OverrideMap> overrides = std::make_shared<OverrideMap>();
  std::atomic<std::uint64_t> overrides_version{1};
};
State* g_state = nullptr;
// Apart from the state: the billing module may set it before or after this module registers.
std::atomic<PlanRates> g_plan_rates{nullptr};

State& state() {
  static State fallback;  // before (or without) registration: defaults, nothing exempt
  return g_state != nullptr ? *g_state : fallback;
}

// This thread's copy of the overrides: the hot path reads it without a lock and takes the
// mutex only after a reload.
struct ThreadOverrides {
  std::uint64_t version = 0;
  std::shared_ptr<const OverrideMap> map;
};
thread_local ThreadOverrides t_overrides;

std::int64_t ceil_seconds(std::int64_t us) { return (us + 999'999) / 1'000'000; }

// X-RateLimit-* and the IETF RateLimit / RateLimit-Policy fields. The policy is stated as the
// bucket: `q` requests (the burst) per `w` seconds (the time the bucket takes to refill), whose
// ratio is the sustained rate.
void set_headers(Response& r, const Resolved& rule, const Decision& d) {
  // Built by appending: this runs on every limited response, and fmt::format's parsing of a
  // format string cost more than the rest of the step.
  fmt::format_int capacity(rule.rate.capacity());
  fmt::format_int window(std::max<std::int64_t>(1, ceil_seconds(rule.rate.tolerance_us())));
  fmt::format_int reset(ceil_seconds(d.reset_us));
  fmt::format_int remaining(d.remaining);
  std::string policy;
  policy.reserve(rule.rule.size() + capacity.size() + window.size() + 8);
  policy.append("\"").append(rule.rule).append("\";q=").append(capacity.data(), capacity.size());
  policy.append(";w=").append(window.data(), window.size());
  std::string now;
  now.reserve(rule.rule.size() + remaining.size() + reset.size() + 8);
  now.append("\"").append(rule.rule).append("\";r=").append(remaining.data(), remaining.size());
  now.append(";t=").append(reset.data(), reset.size());
  // Appended, not set_header: only this step writes these fields, so there is nothing to
  // replace, and the search for one cost as much as the rest.
  r.headers.reserve(r.headers.size() + 5);
  r.headers.push_back({"x-ratelimit-limit", capacity.str()});
  r.headers.push_back({"x-ratelimit-remaining", remaining.str()});
  r.headers.push_back({"x-ratelimit-reset", reset.str()});
  r.headers.push_back({"ratelimit-policy", std::move(policy)});
  r.headers.push_back({"ratelimit", std::move(now)});
}

bool exempt(const RequestContext& ctx) {
  const auto& list = state().exempt;
  if (list.empty()) return false;
  const http::Principal& p = ctx.principal;
  return (!ctx.tenant_id.empty() && list.contains(ctx.tenant_id)) ||
         (!p.user_id.empty() && list.contains(p.user_id)) ||
         (!p.api_key_id.empty() && list.contains(p.api_key_id)) ||
         list.contains(client_key(ctx.request.remote_ip));
}

// Whose bucket the request counts in: the key kind and its id.
std::pair<std::string_view, std::string> subject(const RequestContext& ctx, Per per) {
  const http::Principal& p = ctx.principal;
  if (per == Per::kTenant && !ctx.tenant_id.empty()) return {"tenant", ctx.tenant_id};
  if (per == Per::kPrincipal && p.kind == http::Principal::Kind::kApiKey) {
    return {"api_key", p.api_key_id};
  }
  if (per == Per::kPrincipal && p.kind == http::Principal::Kind::kUser) {
    return {"user", p.user_id};
  }
  return {"ip", client_key(ctx.request.remote_ip)};
}

bool applies(const RequestContext& ctx) {
  if (!state().settings->enabled) return false;
  if (const Limit* rule = ctx.policy<Limit>()) return !rule->off;
  const identity::Access* access = ctx.policy<identity::Access>();
  return access != nullptr && access->authenticated && access->tenant;
}

awaitable<Response> limit(RequestContext& ctx, http::Next next) {
  // Staff (the operators) and the exemption list pass unlimited.
  if (ctx.principal.staff || exempt(ctx)) co_return co_await next(ctx);
  static const Limit kDefault = default_rule();
  const Limit* declared = ctx.policy<Limit>();
  const Limit& rule = declared != nullptr ? *declared : kDefault;
  std::optional<Rate> plan = co_await plan_rate(ctx.tenant_id, rule.limit);
  Resolved resolved = resolve_for(ctx.tenant_id, rule, plan);
  std::pair<std::string_view, std::string> who = subject(ctx, resolved.per);
  Rate rate = resolved.rate;
  // The rate is part of the bucket's name: a bucket's TAT only means something at its rate, so
  // a new rate (an override, a plan change) starts with a full bucket instead of paying off a
  // backlog counted at the old one.
  std::string key = bucket_key(ctx.tenant_id, resolved.rule, who.first, who.second);
  fmt::format_int interval(rate.interval_us()), capacity(rate.capacity());
  key.append(":").append(interval.data(), interval.size());
  key.append("/").append(capacity.data(), capacity.size());
  Decision d = co_await admit(std::move(key), rate);
  count(ctx, resolved, who.first, !d.allowed);
  if (!d.allowed) {
    core::ApiError error(core::ErrorCode::kRateLimited,
                         fmt::format("Too many requests: the limit of this API (rule \"{}\") is "
                                     "{} requests at once, refilling at {} per {} s.",
                                     resolved.rule, resolved.rate.capacity(), resolved.rate.limit,
                                     resolved.rate.period_seconds));
    error.retry_after(static_cast<int>(std::max<std::int64_t>(1, ceil_seconds(d.retry_after_us))));
    Response refused = http::problem(error, ctx.request_id);
    set_headers(refused, resolved, d);
    co_return refused;
  }
  Response response = co_await next(ctx);
  set_headers(response, resolved, d);
  co_return response;
}

std::unordered_set<std::string> parse_exempt(const std::string& text) {
  std::unordered_set<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b == std::string::npos) continue;
    std::string v = item.substr(b, e - b + 1);
    for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.insert(client_key(v));  // addresses as they are counted; ids unchanged
  }
  return out;
}

}  // namespace

const Settings& settings() {
  static const Settings kDefaults;
  return state().settings != nullptr ? *state().settings : kDefaults;
}

void set_plan_rates(PlanRates source) { g_plan_rates.store(source); }
PlanRates plan_rates() { return g_plan_rates.load(std::memory_order_relaxed); }

std::string override_key(const std::string& tenant, const std::string& rule) {
  return tenant + '\n' + rule;
}

std::shared_ptr<const OverrideMap> overrides() {
  State& s = state();
  std::uint64_t version = s.overrides_version.load(std::memory_order_acquire);
  if (t_overrides.version != version) {
    std::lock_guard lock(s.overrides_mutex);
    t_overrides.map = s.overrides;
    t_overrides.version = s.overrides_version.load(std::memory_order_relaxed);
  }
  return t_overrides.map;
}

void set_overrides(std::shared_ptr<const OverrideMap> map) {
  State& s = state();
  std::lock_guard lock(s.overrides_mutex);
  s.overrides = std::move(map);
  s.overrides_version.fetch_add(1, std::memory_order_release);
}

boost::asio::awaitable<std::optional<Rate>> plan_rate(std::string tenant, int rule_limit) {
  PlanRates source = plan_rates();
  if (source == nullptr || tenant.empty() || rule_limit > 0) co_return std::nullopt;
  co_return co_await source(std::move(tenant));
}

Resolved resolve_for(const std::string& tenant, const Limit& rule,
                     const std::optional<Rate>& plan) {
  const Settings& st = settings();
  Rate fallback{st.default_rps, 1, st.default_burst};
  std::optional<Rate> override_rate;
  if (!tenant.empty()) {
    std::shared_ptr<const OverrideMap> map = overrides();
    if (!map->empty()) {
      auto it = map->find(override_key(tenant, rule.rule));
      if (it != map->end()) override_rate = it->second;
    }
  }
  return resolve(rule, plan, fallback, override_rate);
}

void Register(runtime::Registrar& reg) {
  State& s = reg.process(std::make_unique<State>());
  g_state = &s;
  s.settings = &reg.settings(kSettings);
  s.exempt = parse_exempt(s.settings->exempt);
  reg.middleware(
      {.name = "rate-limit", .stage = http::Stage::kAdmission, .around = limit, .when = applies});
  register_routes(reg);
  register_analytics(reg);
  reg.metrics([](std::string& out) {
    fmt::format_to(
        std::back_inserter(out),
        "# HELP hsea_rate_limit_checks_total Rate-limit checks by where they were decided.\n"
        "# TYPE hsea_rate_limit_checks_total counter\n"
        "hsea_rate_limit_checks_total{{backend=\"redis\"}} {}\n"
        "hsea_rate_limit_checks_total{{backend=\"local\"}} {}\n"
        "# HELP hsea_rate_limit_lease_admits_total Requests admitted from a lease of a "
        "cluster-wide bucket, without a round trip.\n"
        "# TYPE hsea_rate_limit_lease_admits_total counter\n"
        "hsea_rate_limit_lease_admits_total {}\n"
        "# HELP hsea_rate_limit_degraded 1 while Redis fails and limits are per node.\n"
        "# TYPE hsea_rate_limit_degraded gauge\n"
        "hsea_rate_limit_degraded {}\n",
        counters().redis_checks.load(), counters().local_checks.load(),
        counters().lease_admits.load(), degraded() ? 1 : 0);
  });
}

}  // namespace hsea::ratelimit
