#pragma once
// The audit log (HSEA-046): who did what to which target, from where, in which request.
// Entries are written in the same transaction as the change they describe, into the tenant of
// that transaction (the row takes app.tenant_id, so it cannot land in another tenant), and the
// application role may only read and insert them.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "db/db.hpp"

namespace hsea::http {
struct RequestContext;
}

namespace hsea::security {

struct AuditEvent {
  std::string action;       // e.g. "member.role_changed"
  std::string target_type;  // e.g. "user"
  std::string target_id;
  std::string metadata = "{}";  // a JSON object, never a secret
  // Overrides the actor taken from the request (e.g. the user who just signed in).
  std::string actor_type;
  std::string actor_id;
};

// Who did it, independent of HTTP: a request's user or API key, a job, a Stripe webhook, an
// operator command.
struct Actor {
  enum class Kind { kAnonymous, kUser, kApiKey, kSystem, kJob, kStripeWebhook, kOperator };
  Kind kind = Kind::kAnonymous;
  std::string id;  // user id, API key id, job id, Stripe event id, operator name
};
std::string_view actor_type(Actor::Kind kind);  // the audit_logs.actor_type value

// Where it came from: for a request its client address, user agent and request id; for a job
// or webhook its id as request_id.
struct Origin {
  std::string ip;
  std::string user_agent;
  std::string request_id;
};

// Build events with these (not braced temporaries inside co_await; see db::tenant_scope).
inline AuditEvent event(std::string action, std::string target_type, std::string target_id,
                        std::string metadata = "{}") {
  return AuditEvent{
      std::move(action), std::move(target_type), std::move(target_id), std::move(metadata), {}, {}};
}
// The same, naming the actor (e.g. the user who is signing in, before a principal exists).
inline AuditEvent event_by(std::string actor_type, std::string actor_id, std::string action,
                           std::string target_type, std::string target_id) {
  return AuditEvent{std::move(action),     std::move(target_type), std::move(target_id), "{}",
                    std::move(actor_type), std::move(actor_id)};
}

// Inside a transaction whose scope names the tenant (the entry commits or rolls back with the
// change it describes). event.actor_type/actor_id, when set, override the actor.
boost::asio::awaitable<void> record(db::Transaction& tx, Actor actor, Origin origin,
                                    AuditEvent event);
// The same in a transaction that switched app.tenant_id to `tenant_id` (one entry per tenant of
// a user): the entry's address is sealed under that tenant's key.
boost::asio::awaitable<void> record(db::Transaction& tx, std::string tenant_id, Actor actor,
                                    Origin origin, AuditEvent event);
// The same for a request: its principal is the actor, its client the origin.
boost::asio::awaitable<void> record(db::Transaction& tx, const http::RequestContext& ctx,
                                    AuditEvent event);
Actor actor_of(const http::RequestContext& ctx);
Origin origin_of(const http::RequestContext& ctx);
// In a transaction of its own, for the given tenant.
boost::asio::awaitable<void> record_in(std::string tenant_id, const http::RequestContext& ctx,
                                       AuditEvent event);

// Deletes entries older than `days` in every tenant (through audit_prune, owned by the schema
// owner) and returns how many. The server runs it daily; `hsea audit prune` runs the blocking
// variant with any database URL.
boost::asio::awaitable<std::int64_t> prune(db::Pool& db, int days);
long prune_audit_log(const std::string& database_url, int days);

}  // namespace hsea::security
