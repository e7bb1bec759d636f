// GET /api/audit-logs: filters (actor, action, target, time range) and cursor pagination.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "security/audit.hpp"
#include "security/pii.hpp"
#include "security/security.hpp"
#include "security/steps.hpp"

namespace hsea::security {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;

// Newest first; the cursor is the id of the last entry seen (UUIDv7 ids sort by time).
HSEA_QUERY kList{"audit_list",
                 "SELECT id, actor_type, actor_id, action, target_type, target_id, ip, user_agent, "
                 "request_id, metadata::text AS metadata, created_at FROM audit_logs "
                 "WHERE ($1::text IS NULL OR actor_id = $1) "
                 "  AND ($2::text IS NULL OR action = $2 OR starts_with(action, $2 || '.')) "
                 "  AND ($3::text IS NULL OR target_id = $3) "
                 "  AND ($4::timestamptz IS NULL OR created_at >= $4) "
                 "  AND ($5::timestamptz IS NULL OR created_at < $5) "
                 "  AND ($6::uuid IS NULL OR id < $6) "
                 "ORDER BY id DESC LIMIT $7"};

std::optional<std::string> query_param(const http::RequestContext& ctx, std::string_view name) {
  std::string value;
  if (!ctx.request.query_param(name, value) || value.empty()) return std::nullopt;
  // The decoded value goes to PostgreSQL as text: it must be UTF-8 without NUL (libpq would
  // cut it there), or the filter would be refused by the database (500) or silently changed.
  if (!log::is_valid_utf8(value) || value.find('\0') != std::string::npos) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the query parameters.",
                   {{std::string(name), "must be UTF-8 text without NUL characters"}});
  }
  return value;
}

}  // namespace

awaitable<http::Response> list_audit_logs(http::RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  // Time bounds are passed to PostgreSQL, which rejects a bad timestamp with 22007 -> 422.
  db::Result r = co_await db::pool().tenant_query(
      ctx.tenant_id, kList,
      db::params(query_param(ctx, "actor"), query_param(ctx, "action"), query_param(ctx, "target"),
                 query_param(ctx, "since"), query_param(ctx, "until"), page.starting_after,
                 page.fetch()));
  // Addresses and user agents are sealed (an entry whose tenant key is gone shows none).
  std::vector<std::string> sealed;
  for (int i = 0; i < r.rows(); ++i) {
    sealed.emplace_back(r.get(i, "ip"));
    sealed.emplace_back(r.get(i, "user_agent"));
  }
  co_await pii::load_keys(db::pool(), sealed);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    data.push_back(object{
        {"id", r.get(i, "id")},
        {"actor", object{{"type", r.get(i, "actor_type")}, {"id", r.get(i, "actor_id")}}},
        {"action", r.get(i, "action")},
        {"target", object{{"type", r.get(i, "target_type")}, {"id", r.get(i, "target_id")}}},
        {"ip", pii::open("audit_logs.ip", r.get(i, "ip")).value_or("")},
        {"user_agent", pii::open("audit_logs.user_agent", r.get(i, "user_agent")).value_or("")},
        {"request_id", r.get(i, "request_id")},
        {"metadata", boost::json::parse(r.get(i, "metadata"))},
        {"created_at", r.time(i, "created_at")}});
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

bool declares_access_event(const http::RequestContext& ctx) {
  return ctx.policy<AccessEvent>() != nullptr;
}

awaitable<http::Response> record_access(http::RequestContext& ctx, http::Next next) {
  http::Response response = co_await next(ctx);
  const AccessEvent* access = ctx.policy<AccessEvent>();
  if (access != nullptr && response.status < 400 && !ctx.tenant_id.empty()) {
    // As text the audit log can store (a path or query may hold any bytes).
    boost::json::object query{{"path", log::valid_utf8(ctx.request.path)},
                              {"query", log::valid_utf8(ctx.request.query)}};
    co_await record_in(
        ctx.tenant_id, ctx,
        event(access->action, "tenant", ctx.tenant_id, boost::json::serialize(query)));
  }
  co_return response;
}

}  // namespace hsea::security
