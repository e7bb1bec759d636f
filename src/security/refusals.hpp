#pragma once
// Audited security refusals (CSRF, CORS) that a flood cannot turn into a flood of writes.
//
// Every refusal counts in hsea_security_refusals_total{kind} (process-wide, never lost). Audit
// entries are sampled: each I/O thread writes at most one entry per tenant and kind every
// kRefusalAuditInterval, and that entry's metadata carries `suppressed`, how many refusals of
// the same tenant and kind this thread counted but did not write since its previous entry. So
// a tenant's log shows that refusals happen, from where and how many, while an attacker who
// sends a million forged requests costs the database at most threads x 60 rows an hour per
// tenant (a refusal names a real tenant only: unknown hosts and non-members write nothing).
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <string>

namespace hsea::http {
struct RequestContext;
}

namespace hsea::security {

constexpr auto kRefusalAuditInterval = std::chrono::seconds(60);

enum class Refusal { kCsrf, kCors };

struct RefusalEvent {
  Refusal kind = Refusal::kCsrf;
  std::string tenant_id;  // the tenant whose log gets the entry ("" : counted only)
  std::string action;     // "security.csrf_refused"
  std::string target_type;
  std::string target_id;
  std::string actor_type;  // "" : the request's principal
  std::string actor_id;
  boost::json::object metadata;
};

// Counts the refusal and, when the sampler lets it, writes its audit entry in a transaction of
// its own (there is no change to share one with). Never throws: a failed write is logged, and
// the caller's refusal stands as it is.
boost::asio::awaitable<void> audit_refusal(const http::RequestContext& ctx, RefusalEvent event);

// The counters, as Prometheus text (registered by the security module).
void append_refusal_metrics(std::string& out);

}  // namespace hsea::security
