#include "security/audit.hpp"

#include <memory>
#include <stdexcept>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/blocking.hpp"
#include "http/context.hpp"

namespace hsea::security {
namespace {

HSEA_QUERY kInsert{
    "audit_insert",
    "INSERT INTO audit_logs (tenant_id, id, actor_type, actor_id, action, target_type, "
    "target_id, ip, user_agent, request_id, metadata) VALUES ("
    "NULLIF(current_setting('app.tenant_id', true), '')::uuid, $1, $2, $3, $4, $5, $6, $7, $8, "
    "$9, $10::jsonb)"};

HSEA_QUERY kPrune{"audit_prune", "SELECT audit_prune($1::int) AS removed"};

db::Params insert_params(const Actor& actor, const Origin& origin, const AuditEvent& e) {
  std::string type = e.actor_type.empty() ? std::string(actor_type(actor.kind)) : e.actor_type;
  std::string id = e.actor_type.empty() ? actor.id : e.actor_id;
  // Client text, made storable: cut at a character boundary, undecodable bytes replaced.
  return db::params(core::uuid_v7(), type, id, e.action, e.target_type, e.target_id,
                    log::valid_utf8(origin.ip, 64), log::valid_utf8(origin.user_agent, 512),
                    origin.request_id, e.metadata);
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
  co_await tx.exec(kInsert, insert_params(actor, origin, event));
}

boost::asio::awaitable<void> record(db::Transaction& tx, const http::RequestContext& ctx,
                                    AuditEvent event) {
  co_await tx.exec(kInsert, insert_params(actor_of(ctx), origin_of(ctx), event));
}

boost::asio::awaitable<void> record_in(std::string tenant_id, const http::RequestContext& ctx,
                                       AuditEvent event) {
  co_await db::pool().tenant_query(std::move(tenant_id), kInsert,
                                   insert_params(actor_of(ctx), origin_of(ctx), event));
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
