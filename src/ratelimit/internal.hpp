#pragma once
// Shared between the module's files (not for other modules).
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "ratelimit/gcra.hpp"
#include "ratelimit/ratelimit.hpp"
#include "ratelimit/rules.hpp"

namespace hsea::http {
struct RequestContext;
}

namespace hsea::ratelimit {

struct Counters {
  std::atomic<std::int64_t> redis_checks{0};
  std::atomic<std::int64_t> local_checks{0};
  std::atomic<std::int64_t> lease_admits{0};  // requests admitted from a lease (no round trip)
};
Counters& counters();
LocalTable& local_table();

// (tenant, rule) -> the override's rate. Replaced whole on every reload.
using OverrideMap = std::unordered_map<std::string, Rate>;
std::string override_key(const std::string& tenant, const std::string& rule);

// Every tenant's overrides, as this node last loaded them.
std::shared_ptr<const OverrideMap> overrides();
void set_overrides(std::shared_ptr<const OverrideMap> map);

const Settings& settings();
PlanRates plan_rates();

// The rate `rule` has for `tenant` now, and where it came from; `plan` is the tenant's plan
// rate (plan_rate()).
Resolved resolve_for(const std::string& tenant, const Limit& rule, const std::optional<Rate>& plan);
// The tenant's plan rate when `rule` takes it (a rule without its own rate), else nullopt.
boost::asio::awaitable<std::optional<Rate>> plan_rate(std::string tenant, int rule_limit);

// Analytics: one request passed the limiter (allowed or not).
void count(const http::RequestContext& ctx, const Resolved& rule, std::string_view kind,
           bool limited);

// Routes (routes.cpp) and analytics (analytics.cpp).
void register_routes(runtime::Registrar& registrar);
void register_analytics(runtime::Registrar& registrar);

}  // namespace hsea::ratelimit
