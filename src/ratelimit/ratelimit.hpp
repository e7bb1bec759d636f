#pragma once
// Rate limiting (HSEA-031..035): GCRA buckets shared by every node through Redis (one EVALSHA
// per check), decided in process while Redis is unset or down; the middleware that applies a
// route's rule (ratelimit::Limit, policies.hpp) with the standard headers; plan rates,
// per-tenant overrides and the operator's API; counts of limited requests, alerts and the
// anomaly detector.
#include <boost/asio/awaitable.hpp>

#include <optional>
#include <string>

#include "ratelimit/gcra.hpp"
#include "ratelimit/policies.hpp"

namespace hsea::runtime {
class Registrar;
}
namespace hsea::redis {
class Client;
}

namespace hsea::ratelimit {

struct Settings {
  bool enabled = true;
  int default_rps = 100;       // the "api" rule when neither plan nor override sets one
  int default_burst = 200;     //
  std::string exempt;          // comma-separated tenant, user and API-key ids and client addresses
  int alert_threshold = 1000;  // limited requests of one tenant per flush that raise an alert
  int flush_seconds = 60;      // analytics: how often counts are written and the detector fed
  int override_refresh_seconds = 5;  // how soon another node's override change applies
};

// The tenant's plan rate for rules without their own (requests per second and burst from the
// plan's limits); nullopt when the plan sets none. Set by the module that knows plans (billing)
// at registration. It runs for every request limited by such a rule, so it must answer from
// memory (billing's per-thread entitlements cache) but for a rare miss.
using PlanRates = boost::asio::awaitable<std::optional<Rate>> (*)(std::string tenant_id);
void set_plan_rates(PlanRates source);

// One check of bucket `key` against `rate`: takes `cost` requests from it (`peek`: only asks).
// Cluster-wide through Redis (one round trip: EVALSHA of a script loaded once per connection,
// loaded again on NOSCRIPT); while Redis is unset, down or failing, the node decides alone from
// its own table (fail open to per-node limits; /health says degraded). Usable from any module
// on an I/O thread.
boost::asio::awaitable<Decision> check(std::string key, Rate rate, int cost = 1, bool peek = false);

// The same on a given client (null: the node's table); check() uses the thread's client. For
// tools and benchmarks that run no runtime (bench/limiter_bench.cpp).
boost::asio::awaitable<Decision> check_on(redis::Client* client, std::string key, Rate rate,
                                          int cost = 1, bool peek = false);

// One request of a route's rule (the rate-limit step): check(key, rate) for one request, except
// that on a bucket of a high rate (lease_max(rate) > 1) with Redis configured, this I/O thread
// takes a lease of several tokens in one check and admits the next requests from it without a
// round trip (gcra.hpp, Leases: never more than the bucket allows). The sign-in throttle's
// peeks stay on check(): they must see every token taken.
boost::asio::awaitable<Decision> admit(std::string key, Rate rate);
boost::asio::awaitable<Decision> admit_on(redis::Client* client, std::string key, Rate rate);

// Whether the last check on this node fell back to the local table because Redis failed.
bool degraded();

void Register(runtime::Registrar& registrar);

}  // namespace hsea::ratelimit
