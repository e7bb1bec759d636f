#include "security/audit.hpp"

#include <memory>
#include <stdexcept>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/blocking.hpp"
#include "http/context.hpp"
#include "security/pii.hpp"

namespace hsea::security {
namespace {

// The tenant is named ($11: the one whose key sealed the address) and row-level security checks
// it against app.tenant_id: a transaction that switched tenants without saying so fails loudly
// instead of sealing one tenant's entry under another's key.
HSEA_QUERY kInsert{
    "audit_insert",
    "INSERT INTO audit_logs (tenant_id, id, actor_type, actor_id, action, target_type, "
    "target_id, ip, user_agent, request_id, metadata) VALUES ("
    "NULLIF($11, '')::uuid, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)"};

HSEA_QUERY kPrune{"audit_prune", "SELECT audit_prune($1::int) AS removed"};

// Client text, made storable: cut at a character boundary, undecodable bytes replaced.
Origin storable(const Origin& origin) {
  return Origin{log::valid_utf8(origin.ip, 64), log::valid_utf8(origin.user_agent, 512),
                origin.request_id};
}

// The address and user agent are personal data: sealed under the tenant's key (the entry
// belongs to the tenant; the transaction may be the one that created it, hence the
// transaction's own seal).
boost::asio::awaitable<Origin> sealed(db::Transaction& tx, std::string tenant_id, Origin origin) {
  Origin out = storable(origin);
  pii::Owner owner = pii::tenant_owner(std::move(tenant_id));
  out.ip = co_await pii::seal(tx, owner, "audit_logs.ip", out.ip);
  out.user_agent = co_await pii::seal(tx, owner, "audit_logs.user_agent", out.user_agent);
  co_return out;
}

db::Params insert_params(const std::string& tenant_id, const Actor& actor, const Origin& origin,
                         const AuditEvent& e) {
  std::string type = e.actor_type.empty() ? std::string(actor_type(actor.kind)) : e.actor_type;
  std::string id = e.actor_type.empty() ? actor.id : e.actor_id;
  return db::params(core::uuid_v7(), type, id, e.action, e.target_type, e.target_id, origin.ip,
                    origin.user_agent, origin.request_id, e.metadata, tenant_id);
}

}  // namespace

std::string_view actor_type(Actor::Kind kind) {
  switch (kind) {
    case Actor::Kind::kUser:
      return "user";
    case Actor::Kind::kApiKey:
      return "api_key";
    case Actor::Kind::kSystem:
      return "system";
    case Actor::Kind::kJob:
      return "job";
    case Actor::Kind::kStripeWebhook:
      return "stripe_webhook";
    case Actor::Kind::kOperator:
      return "operator";
    case Actor::Kind::kAnonymous:
      break;
  }
  return "anonymous";
}

Actor actor_of(const http::RequestContext& ctx) {
  switch (ctx.principal.kind) {
    case http::Principal::Kind::kUser:
      return Actor{Actor::Kind::kUser, ctx.principal.user_id};
    case http::Principal::Kind::kApiKey:
      return Actor{Actor::Kind::kApiKey, ctx.principal.api_key_id};
    case http::Principal::Kind::kAnonymous:
      break;
  }
  return Actor{};
}

Origin origin_of(const http::RequestContext& ctx) {
  return Origin{ctx.request.remote_ip, std::string(ctx.request.header("user-agent")),
                ctx.request_id};
}

boost::asio::awaitable<void> record(db::Transaction& tx, Actor actor, Origin origin,
                                    AuditEvent event) {
  std::string tenant_id = tx.scope().tenant_id;
  co_await record(tx, std::move(tenant_id), std::move(actor), std::move(origin), std::move(event));
}

boost::asio::awaitable<void> record(db::Transaction& tx, std::string tenant_id, Actor actor,
                                    Origin origin, AuditEvent event) {
  Origin stored = co_await sealed(tx, tenant_id, std::move(origin));
  co_await tx.exec(kInsert, insert_params(tenant_id, actor, stored, event));
}

boost::asio::awaitable<void> record(db::Transaction& tx, const http::RequestContext& ctx,
                                    AuditEvent event) {
  co_await record(tx, actor_of(ctx), origin_of(ctx), std::move(event));
}

boost::asio::awaitable<void> record_in(std::string tenant_id, const http::RequestContext& ctx,
                                       AuditEvent event) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant_id));
  Origin stored = co_await sealed(tx, tenant_id, origin_of(ctx));
  co_await tx.exec_commit(kInsert, insert_params(tenant_id, actor_of(ctx), stored, event));
}

boost::asio::awaitable<std::int64_t> prune(db::Pool& db, int days) {
  db::Result r = co_await db.query(kPrune, db::params(days));
  co_return r.get_int(0, "removed");
}

long prune_audit_log(const std::string& database_url, int days) {
  db::BlockingConnection conn(database_url, "audit prune");
  return conn.exec(kPrune.sql, {std::to_string(days)}).get_int(0, "removed");
}

}  // namespace hsea::security
