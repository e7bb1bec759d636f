// HSEA-034/035: the operator's override API and rate-limit reports (staff), the tenant's own
// report (owners and admins), and the in-memory copy of every override.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <ctime>
#include <regex>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "identity/access.hpp"
#include "ratelimit/analytics.hpp"
#include "ratelimit/internal.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/policies.hpp"

namespace hsea::ratelimit {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

HSEA_QUERY kAllOverrides{"rate_limit_overrides_all",
                         "SELECT tenant_id, rule, requests, period_seconds, burst, note, "
                         "updated_by, updated_at FROM rate_limit_overrides_all()"};
HSEA_QUERY kTenantOverrides{"rate_limit_overrides_of_tenant",
                            "SELECT tenant_id, rule, requests, period_seconds, burst, note, "
                            "updated_by, updated_at FROM rate_limit_overrides ORDER BY rule"};
// Through tenants (visible only in its own scope), so an unknown tenant writes nothing: 404.
HSEA_QUERY kPutOverride{
    "rate_limit_override_put",
    "INSERT INTO rate_limit_overrides (tenant_id, rule, requests, period_seconds, burst, note, "
    "updated_by) SELECT id, $1, $2::int, $3::int, $4::int, $5, NULLIF($6, '')::uuid FROM tenants "
    "ON CONFLICT (tenant_id, rule) DO UPDATE SET requests = EXCLUDED.requests, "
    "period_seconds = EXCLUDED.period_seconds, burst = EXCLUDED.burst, note = EXCLUDED.note, "
    "updated_by = EXCLUDED.updated_by, updated_at = now() "
    "RETURNING tenant_id, rule, requests, period_seconds, burst, note, updated_by, updated_at"};
HSEA_QUERY kDeleteOverride{"rate_limit_override_delete",
                           "DELETE FROM rate_limit_overrides WHERE rule = $1"};
HSEA_QUERY kTenantReport{
    "rate_limit_tenant_report",
    "SELECT hour, rule, key_kind, limited, requests FROM rate_limit_stats "
    "WHERE hour >= date_trunc('hour', now()) - make_interval(hours => $1::int) "
    "ORDER BY hour, rule, key_kind"};
HSEA_QUERY kPlatformReport{"rate_limit_platform_report",
                           "SELECT tenant_id, rule, key_kind, limited, requests "
                           "FROM rate_limit_report($1::int)"};

object override_json(const db::Result& r, int row) {
  object o{{"tenant_id", r.get(row, "tenant_id")},
           {"rule", r.get(row, "rule")},
           {"requests", r.get_int(row, "requests")},
           {"period_seconds", r.get_int(row, "period_seconds")},
           {"burst", r.get_int(row, "burst")},
           {"note", r.get(row, "note")},
           {"updated_at", r.time(row, "updated_at")}};
  o["updated_by"] = r.nullable(row, "updated_by");
  return o;
}

Rate rate_of(const db::Result& r, int row) {
  return Rate{r.get_int(row, "requests"), r.get_int(row, "period_seconds"),
              r.get_int(row, "burst")};
}

awaitable<void> reload_overrides() {
  db::Result r = co_await db::pool().query(kAllOverrides);
  auto map = std::make_shared<OverrideMap>();
  for (int i = 0; i < r.rows(); ++i) {
    map->emplace(override_key(r.text(i, "tenant_id"), r.text(i, "rule")), rate_of(r, i));
  }
  set_overrides(std::move(map));
}

std::string tenant_param(const RequestContext& ctx) {
  std::string id(ctx.param("tenant_id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such tenant.");
  for (char& c : id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return id;
}

std::string rule_param(const RequestContext& ctx) {
  static const std::regex kRule("^[a-z][a-z0-9_.-]{0,62}$");
  std::string rule(ctx.param("rule"));
  if (!std::regex_match(rule, kRule)) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/rule", "must be a rule name: a-z, 0-9, '_', '.', '-', at most 63"}});
  }
  return rule;
}

int hours_param(const RequestContext& ctx) {
  std::string text;
  if (!ctx.request.query_param("hours", text)) return 24;
  auto n = core::parse_integer(text, 1, 24 * 90);
  if (!n) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"hours", "must be an integer from 1 to 2160"}});
  }
  return static_cast<int>(*n);
}

std::int64_t int_field(const object& body, std::string_view name, std::int64_t fallback) {
  auto it = body.find(name);
  if (it == body.end()) return fallback;
  return it->value().to_number<std::int64_t>();
}

awaitable<Response> list_all(RequestContext&) {
  db::Result r = co_await db::pool().query(kAllOverrides);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(override_json(r, i));
  co_return http::json_response(200, object{{"data", std::move(data)}});
}

awaitable<Response> list_tenant(RequestContext& ctx) {
  std::string tenant = tenant_param(ctx);
  db::Result r = co_await db::pool().tenant_query(tenant, kTenantOverrides);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(override_json(r, i));
  co_return http::json_response(200, object{{"data", std::move(data)}});
}

awaitable<Response> put_override(RequestContext& ctx) {
  std::string tenant = tenant_param(ctx);
  std::string rule = rule_param(ctx);
  const object& body = http::json_body(ctx);
  std::int64_t requests = int_field(body, "requests", 0);
  std::int64_t period = int_field(body, "period_seconds", 1);
  std::int64_t burst = int_field(body, "burst", 0);
  std::string note = http::optional_string(body, "note").value_or("");
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  db::Result r = co_await tx.exec(
      kPutOverride, db::params(rule, requests, period, burst, note, ctx.principal.user_id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such tenant.");
  object out = override_json(r, 0);
  std::string metadata = boost::json::serialize(
      object{{"rule", rule}, {"requests", requests}, {"period_seconds", period}, {"burst", burst}});
  co_await security::record(
      tx, ctx, security::event("rate_limit.override_set", "tenant", tenant, std::move(metadata)));
  co_await tx.commit();
  co_await reload_overrides();  // this node at once; the others within the refresh interval
  co_return http::json_response(200, out);
}

awaitable<Response> delete_override(RequestContext& ctx) {
  std::string tenant = tenant_param(ctx);
  std::string rule = rule_param(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  db::Result r = co_await tx.exec(kDeleteOverride, db::params(rule));
  if (r.affected() == 0) throw ApiError(ErrorCode::kNotFound, "No such override.");
  std::string metadata = boost::json::serialize(object{{"rule", rule}});
  co_await security::record(
      tx, ctx,
      security::event("rate_limit.override_removed", "tenant", tenant, std::move(metadata)));
  co_await tx.commit();
  co_await reload_overrides();
  co_return Response::no_content();
}

object effective_json(const Resolved& r) {
  return object{{"rule", r.rule},
                {"requests", r.rate.limit},
                {"period_seconds", r.rate.period_seconds},
                {"burst", r.rate.capacity()},
                {"source", r.source}};
}

awaitable<Response> tenant_report(RequestContext& ctx) {
  int hours = hours_param(ctx);
  co_await flush_now();
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kTenantReport, db::params(hours));
  boost::json::array data;
  std::int64_t limited = 0;
  for (int i = 0; i < r.rows(); ++i) {
    limited += r.get_int(i, "limited");
    data.push_back(object{{"hour", r.time(i, "hour")},
                          {"rule", r.get(i, "rule")},
                          {"key", r.get(i, "key_kind")},
                          {"limited", r.get_int(i, "limited")},
                          {"requests", r.get_int(i, "requests")}});
  }
  // The detector's findings for this tenant since the window's first hour, as this node keeps
  // them (RFC 3339 UTC text of one format: compared as text).
  std::time_t from = std::time(nullptr) / 3600 * 3600 - static_cast<std::time_t>(hours) * 3600;
  std::string since = fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(from));
  boost::json::array anomalies;
  for (const Anomaly& a : recent_anomalies()) {
    if (a.tenant_id != ctx.tenant_id || a.at < since) continue;
    anomalies.push_back(
        object{{"rate_per_second", a.rate}, {"baseline_per_second", a.baseline}, {"at", a.at}});
  }
  static const Limit kDefault = default_rule();
  std::optional<Rate> plan = co_await plan_rate(ctx.tenant_id, 0);
  co_return http::json_response(
      200, object{{"hours", hours},
                  {"limited", limited},
                  {"limit", effective_json(resolve_for(ctx.tenant_id, kDefault, plan))},
                  {"data", std::move(data)},
                  {"anomalies", std::move(anomalies)}});
}

awaitable<Response> platform_report(RequestContext& ctx) {
  int hours = hours_param(ctx);
  co_await flush_now();
  db::Result r = co_await db::pool().query(kPlatformReport, db::params(hours));
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    data.push_back(object{{"tenant_id", r.get(i, "tenant_id")},
                          {"rule", r.get(i, "rule")},
                          {"key", r.get(i, "key_kind")},
                          {"limited", r.get_int(i, "limited")},
                          {"requests", r.get_int(i, "requests")}});
  }
  boost::json::array anomalies;
  for (const Anomaly& a : recent_anomalies()) {
    anomalies.push_back(object{{"tenant_id", a.tenant_id},
                               {"rate_per_second", a.rate},
                               {"baseline_per_second", a.baseline},
                               {"at", a.at}});
  }
  co_return http::json_response(200, object{{"hours", hours},
                                            {"degraded", degraded()},
                                            {"data", std::move(data)},
                                            {"anomalies", std::move(anomalies)}});
}

awaitable<void> refresh_overrides() {
  try {
    co_await reload_overrides();
  } catch (const std::exception& e) {
    log::warn("rate limits: overrides not reloaded", {{"error", e.what()}});
  }
}

}  // namespace

void register_routes(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  const identity::Access staff{.authenticated = true, .staff = true};
  const identity::Access admins{.authenticated = true,
                                .tenant = true,
                                .roles = {"owner", "admin"},
                                .scopes = {"tenant:read"}};
  // Reports query the database: a caller gets 30 a minute (10 at once), apart from the API's.
  const Limit reports{.rule = "rate_limits.report",
                      .per = Per::kPrincipal,
                      .limit = 30,
                      .period_seconds = 60,
                      .burst = 10};
  reg.route({.method = Method::kGet,
             .path = "/api/rate-limits/report",
             .handler = tenant_report,
             .policies = Policies(admins, reports)});
  reg.route({.method = Method::kGet,
             .path = "/api/admin/rate-limits/report",
             .handler = platform_report,
             .policies = Policies(staff)});
  reg.route({.method = Method::kGet,
             .path = "/api/admin/rate-limits/overrides",
             .handler = list_all,
             .policies = Policies(staff)});
  reg.route({.method = Method::kGet,
             .path = "/api/admin/rate-limits/overrides/{tenant_id}",
             .handler = list_tenant,
             .policies = Policies(staff)});
  reg.route({.method = Method::kPut,
             .path = "/api/admin/rate-limits/overrides/{tenant_id}/{rule}",
             .handler = put_override,
             .policies = Policies(staff, security::Body{"RateLimitOverrideRequest"})});
  reg.route({.method = Method::kDelete,
             .path = "/api/admin/rate-limits/overrides/{tenant_id}/{rule}",
             .handler = delete_override,
             .policies = Policies(staff)});
  reg.periodic({.name = "rate-limit-overrides",
                .interval = std::chrono::seconds(settings().override_refresh_seconds),
                .first_delay = std::chrono::seconds(0),
                .run = refresh_overrides});
}

}  // namespace hsea::ratelimit
