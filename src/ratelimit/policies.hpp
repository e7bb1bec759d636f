#pragma once
// Route policy (vocabulary any module may use; the rate-limit middleware enforces it): the
// route's own rate-limit rule. Declaration only. A route that declares none gets the default
// rule "api" when it is an authenticated tenant route (identity::Access with authenticated and
// tenant), and no limit otherwise.
#include <string>

namespace hsea::ratelimit {

// Whose requests share one bucket.
enum class Per {
  kTenant,     // the whole tenant (no tenant: the client address)
  kPrincipal,  // the calling user or API key, within its tenant (anonymous: the address)
  kIp,         // the client address (IPv6 per /64)
};

struct Limit {
  std::string rule;  // names the bucket, the override and the metrics label ("api", "exports")
  Per per = Per::kTenant;
  // `limit` requests per `period_seconds`, up to `burst` at once (0: burst = limit). A rule
  // with limit 0 takes its rate from the plan (then the settings' default), like "api".
  int limit = 0;
  int period_seconds = 1;
  int burst = 0;
  bool off = false;  // this route is never limited
};

}  // namespace hsea::ratelimit
