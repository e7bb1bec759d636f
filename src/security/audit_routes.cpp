// GET /api/audit-logs: filters (actor, action, target, time range) and cursor pagination; and
// GET /api/audit-logs/export, the same pages as NDJSON or CSV (a plan feature, audit_export).
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
  return value;
}

// The entries of one page of GET /api/audit-logs (and of its export): the same filters, the
// same query, the same cursor; sealed addresses and user agents opened.
struct Entries {
  http::Page page;
  boost::json::array data;  // up to page.limit + 1 entries (the extra one says has_more)
};
awaitable<Entries> entries(const http::RequestContext& ctx) {
  Entries out{http::page_of(ctx), {}};
  // Time bounds are passed to PostgreSQL, which rejects a bad timestamp with 22007 -> 422.
  db::Result r = co_await db::pool().tenant_query(
      ctx.tenant_id, kList,
      db::params(query_param(ctx, "actor"), query_param(ctx, "action"), query_param(ctx, "target"),
                 query_param(ctx, "since"), query_param(ctx, "until"), out.page.starting_after,
                 out.page.fetch()));
  // Addresses and user agents are sealed (an entry whose tenant key is gone shows none).
  std::vector<std::string> sealed;
  for (int i = 0; i < r.rows(); ++i) {
    sealed.emplace_back(r.get(i, "ip"));
    sealed.emplace_back(r.get(i, "user_agent"));
  }
  co_await pii::load_keys(db::pool(), sealed);
  for (int i = 0; i < r.rows(); ++i) {
    out.data.push_back(object{
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
  co_return out;
}

// One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break, quotes doubled. A
// cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first: a user agent or metadata
// is the client's text) gets a leading ' (OWASP's CSV injection advice).
void csv_cell(std::string& out, std::string_view v) {
  std::string cell;
  if (!v.empty() && std::string_view("=+-@\t\r").find(v.front()) != std::string_view::npos) {
    cell += '\'';
  }
  cell += v;
  if (cell.find_first_of(",\"\r\n") == std::string::npos) {
    out += cell;
    return;
  }
  out += '"';
  for (char c : cell) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

std::string as_text(const boost::json::value& v) {
  return v.is_string() ? std::string(v.as_string()) : boost::json::serialize(v);
}

}  // namespace

awaitable<http::Response> list_audit_logs(http::RequestContext& ctx) {
  Entries e = co_await entries(ctx);
  co_return http::json_response(200, http::page_json(std::move(e.data), e.page));
}

// GET /api/audit-logs/export: the same page as GET /api/audit-logs (filters, limit, cursor) as
// NDJSON (one entry per line, the list's objects) or CSV (a header row, then one row per entry).
// The next page is named by X-Next-Starting-After while X-Has-More is true.
awaitable<http::Response> export_audit_logs(http::RequestContext& ctx) {
  std::string format = "ndjson";
  if (std::string f; ctx.request.query_param("format", f)) format = f;
  if (format != "ndjson" && format != "csv") {
    throw ApiError(ErrorCode::kBadRequest, "format must be ndjson or csv.");
  }
  Entries e = co_await entries(ctx);
  bool more = e.data.size() > static_cast<std::size_t>(e.page.limit);
  if (more) e.data.resize(e.page.limit);
  std::string body;
  if (format == "ndjson") {
    for (const auto& entry : e.data) {
      body += boost::json::serialize(entry);
      body += '\n';
    }
  } else {
    body =
        "id,created_at,actor_type,actor_id,action,target_type,target_id,ip,user_agent,"
        "request_id,metadata\r\n";
    for (const auto& v : e.data) {
      const object& o = v.as_object();
      const std::string cells[] = {as_text(o.at("id")),
                                   as_text(o.at("created_at")),
                                   as_text(o.at("actor").at("type")),
                                   as_text(o.at("actor").at("id")),
                                   as_text(o.at("action")),
                                   as_text(o.at("target").at("type")),
                                   as_text(o.at("target").at("id")),
                                   as_text(o.at("ip")),
                                   as_text(o.at("user_agent")),
                                   as_text(o.at("request_id")),
                                   as_text(o.at("metadata"))};
      bool first = true;
      for (const std::string& c : cells) {
        if (!first) body += ',';
        first = false;
        csv_cell(body, c);
      }
      body += "\r\n";
    }
  }
  http::Response out =
      http::Response::text(200, std::move(body),
                           format == "ndjson" ? "application/x-ndjson" : "text/csv; charset=utf-8");
  out.set_header("content-disposition",
                 std::string("attachment; filename=\"audit-log.") + format + "\"");
  out.set_header("cache-control", "private, no-store");
  out.set_header("x-has-more", more ? "true" : "false");
  if (more && !e.data.empty()) {
    out.set_header("x-next-starting-after", as_text(e.data.back().as_object().at("id")));
  }
  co_return out;
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
