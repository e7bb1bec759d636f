#include "security/audit.hpp"

#include <memory>
#include <stdexcept>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/blocking.hpp"
#include "http/context.hpp"

namespace hsea::security {
namespace {

constexpr db::Query kInsert{
    "audit_insert",
    "INSERT INTO audit_logs (tenant_id, id, actor_type, actor_id, action, target_type, "
    "target_id, ip, user_agent, request_id, metadata) VALUES ("
    "NULLIF(current_setting('app.tenant_id', true), '')::uuid, $1, $2, $3, $4, $5, $6, $7, $8, "
    "$9, $10::jsonb)"};

constexpr db::Query kPrune{"audit_prune", "SELECT audit_prune($1::int) AS removed"};

db::Params insert_params(const http::RequestContext& ctx, AuditEvent& e) {
  if (e.actor_type.empty()) {
    switch (ctx.principal.kind) {
      case http::Principal::Kind::kUser:
        e.actor_type = "user";
        e.actor_id = ctx.principal.user_id;
        break;
      case http::Principal::Kind::kApiKey:
        e.actor_type = "api_key";
        e.actor_id = ctx.principal.api_key_id;
        break;
      case http::Principal::Kind::kAnonymous:
        e.actor_type = "anonymous";
        break;
    }
  }
  // Client text, made storable: cut at a character boundary, undecodable bytes replaced.
  std::string user_agent = log::valid_utf8(ctx.request.header("user-agent"), 512);
  std::string ip = log::valid_utf8(ctx.request.remote_ip, 64);
  return db::params(core::uuid_v7(), e.actor_type, e.actor_id, e.action, e.target_type, e.target_id,
                    ip, user_agent, ctx.request_id, e.metadata);
}

}  // namespace

boost::asio::awaitable<void> record(db::Transaction& tx, const http::RequestContext& ctx,
                                    AuditEvent event) {
  co_await tx.exec(kInsert, insert_params(ctx, event));
}

boost::asio::awaitable<void> record_in(std::string tenant_id, const http::RequestContext& ctx,
                                       AuditEvent event) {
  co_await ctx.db.tenant_query(std::move(tenant_id), kInsert, insert_params(ctx, event));
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
