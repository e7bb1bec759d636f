// The endpoint API: tenants register, change, rotate and test their webhook endpoints and read
// and retry their deliveries. Owners and admins only.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <set>

#include "billing/policies.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "jobs/jobs.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"
#include "security/audit.hpp"
#include "security/policies.hpp"
#include "webhooks/internal.hpp"
#include "webhooks/webhooks.hpp"

namespace hsea::webhooks {
namespace {

using boost::asio::awaitable;
using boost::json::array;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

#define HSEA_ENDPOINT_COLUMNS                                                        \
  "id, url, description, event_types::text AS event_types, enabled, failing_since, " \
  "disabled_at, disabled_reason, CASE WHEN previous_secret_expires_at > now() "      \
  "THEN previous_secret_expires_at END AS previous_secret_expires_at, created_at, updated_at"
#define HSEA_DELIVERY_COLUMNS                                                               \
  "id, endpoint_id, event_id, event_type, status, attempts, last_status_code, last_error, " \
  "created_at, updated_at, delivered_at"

HSEA_QUERY kInsert{"webhook_endpoint_insert",
                   "INSERT INTO webhook_endpoints (tenant_id, id, url, description, event_types, "
                   "enabled, secret_sealed) VALUES (current_setting('app.tenant_id')::uuid, $1, "
                   "$2, $3, $4::text[], $5, $6) RETURNING " HSEA_ENDPOINT_COLUMNS};
HSEA_QUERY kList{"webhook_endpoint_list",
                 "SELECT " HSEA_ENDPOINT_COLUMNS
                 " FROM webhook_endpoints "
                 "WHERE ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"};
HSEA_QUERY kGet{"webhook_endpoint_get",
                "SELECT " HSEA_ENDPOINT_COLUMNS " FROM webhook_endpoints WHERE id = $1"};
// Enabling clears the failure streak; disabling through the API says so.
HSEA_QUERY kUpdate{
    "webhook_endpoint_update",
    "UPDATE webhook_endpoints SET url = COALESCE($2, url), "
    "description = COALESCE($3, description), event_types = COALESCE($4::text[], event_types), "
    "enabled = COALESCE($5::boolean, enabled), "
    "failing_since = CASE WHEN $5::boolean THEN NULL ELSE failing_since END, "
    "disabled_at = CASE WHEN $5::boolean THEN NULL WHEN NOT $5::boolean "
    "THEN COALESCE(disabled_at, now()) ELSE disabled_at END, "
    "disabled_reason = CASE WHEN $5::boolean THEN NULL WHEN NOT $5::boolean "
    "THEN COALESCE(disabled_reason, 'disabled through the API') ELSE disabled_reason END, "
    "updated_at = now() WHERE id = $1 RETURNING " HSEA_ENDPOINT_COLUMNS};
HSEA_QUERY kDelete{"webhook_endpoint_delete",
                   "DELETE FROM webhook_endpoints WHERE id = $1 RETURNING id"};
HSEA_QUERY kRotate{
    "webhook_endpoint_rotate",
    "UPDATE webhook_endpoints SET previous_secret_sealed = secret_sealed, "
    "previous_secret_expires_at = now() + make_interval(secs => $3::int), secret_sealed = $2, "
    "updated_at = now() WHERE id = $1 RETURNING " HSEA_ENDPOINT_COLUMNS};
HSEA_QUERY kTestDelivery{
    "webhook_delivery_insert_test",
    "INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, body) "
    "SELECT tenant_id, uuid_v7(), id, $2::uuid, 'webhook.test', $3 FROM webhook_endpoints "
    "WHERE id = $1 AND enabled RETURNING " HSEA_DELIVERY_COLUMNS};
HSEA_QUERY kDeliveries{"webhook_delivery_list",
                       "SELECT " HSEA_DELIVERY_COLUMNS
                       " FROM webhook_deliveries "
                       "WHERE endpoint_id = $1 AND ($2::uuid IS NULL OR id < $2) "
                       "ORDER BY id DESC LIMIT $3"};
HSEA_QUERY kAttempts{"webhook_attempt_list",
                     "SELECT delivery_id, attempt, status_code, duration_ms, response_body, error, "
                     "created_at FROM webhook_attempts WHERE delivery_id = ANY($1::uuid[]) "
                     "ORDER BY delivery_id, attempt, id"};
// A delivery not waiting for its first attempt may be sent again (the same webhook-id).
HSEA_QUERY kRetry{"webhook_delivery_retry",
                  "UPDATE webhook_deliveries SET status = 'pending', updated_at = now() "
                  "WHERE id = $1 AND endpoint_id = $2 AND status <> 'pending' "
                  "RETURNING " HSEA_DELIVERY_COLUMNS};
HSEA_QUERY kDeliveryStatus{"webhook_delivery_status",
                           "SELECT status FROM webhook_deliveries WHERE id = $1 "
                           "AND endpoint_id = $2"};

const char* const kDeliverKind = "webhooks.deliver";

object endpoint_json(const db::Result& r, int row) {
  array types;
  for (const std::string& t : r.words(row, "event_types")) types.emplace_back(t);
  return object{{"id", r.text(row, "id")},
                {"url", r.text(row, "url")},
                {"description", r.text(row, "description")},
                {"event_types", std::move(types)},
                {"enabled", r.get_bool(row, "enabled")},
                {"failing_since", r.nullable_time(row, "failing_since")},
                {"disabled_at", r.nullable_time(row, "disabled_at")},
                {"disabled_reason", r.nullable(row, "disabled_reason")},
                {"previous_secret_expires_at", r.nullable_time(row, "previous_secret_expires_at")},
                {"created_at", r.time(row, "created_at")},
                {"updated_at", r.time(row, "updated_at")}};
}

// What events carry about an endpoint (never its secret).
std::string endpoint_event_data(const object& endpoint) {
  object data;
  for (const char* k : {"id", "url", "description", "event_types", "enabled"}) {
    data[k] = endpoint.at(k);
  }
  return boost::json::serialize(data);
}

object delivery_json(const db::Result& r, int row) {
  return object{{"id", r.text(row, "id")},
                {"endpoint_id", r.text(row, "endpoint_id")},
                {"event_id", r.text(row, "event_id")},
                {"event_type", r.text(row, "event_type")},
                {"status", r.text(row, "status")},
                {"attempt_count", r.get_int(row, "attempts")},
                {"last_status_code", r.nullable_int(row, "last_status_code")},
                {"last_error", r.nullable(row, "last_error")},
                {"created_at", r.time(row, "created_at")},
                {"updated_at", r.time(row, "updated_at")},
                {"delivered_at", r.nullable_time(row, "delivered_at")},
                {"attempts", array{}}};
}

object attempt_json(const db::Result& r, int row) {
  return object{{"attempt", r.get_int(row, "attempt")},
                {"status_code", r.nullable_int(row, "status_code")},
                {"duration_ms", r.get_int(row, "duration_ms")},
                {"response_body", r.text(row, "response_body")},
                {"error", r.nullable(row, "error")},
                {"created_at", r.time(row, "created_at")}};
}

[[noreturn]] void invalid(std::string field, std::string message) {
  throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                 {{std::move(field), std::move(message)}});
}

std::string endpoint_id(const RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  return id;
}

// A checked URL: the form always; https in production and a public address unless
// HSEA_WEBHOOK_ALLOW_PRIVATE (resolved on the I/O pool).
awaitable<std::string> checked_url(std::string url) {
  const State& s = state();
  auto parsed = parse_endpoint_url(url, s.production);
  if (!parsed) invalid("/url", parsed.error());
  if (!s.settings.allow_private) {
    auto check = [u = *parsed] { return check_resolves_public(u, false); };
    std::string refusal = co_await runtime::io_pool().run(std::move(check));
    if (!refusal.empty()) invalid("/url", refusal);
  }
  co_return url;
}

std::string checked_description(const object& body) {
  std::string d = http::optional_string(body, "description").value_or("");
  // Characters, as JSON Schema's maxLength and PostgreSQL's length() count them.
  std::size_t chars = 0;
  for (unsigned char c : d) chars += (c & 0xc0) != 0x80;
  if (chars > 500) invalid("/description", "must be at most 500 characters");
  return d;
}

// The text[] literal of the subscribed types; empty means every type.
std::string checked_event_types(const boost::json::value& v) {
  if (!v.is_array()) invalid("/event_types", "must be an array of event types");
  std::set<std::string> types;
  for (const auto& t : v.as_array()) {
    bool known = false;
    if (t.is_string()) {
      for (const jobs::EventType& e : jobs::event_types()) known |= e.type == t.as_string();
    }
    if (!known) {
      invalid("/event_types",
              "each must be an event type (see GET /api/webhooks/event-types); " +
                  (t.is_string() ? std::string(t.as_string()) : std::string("a non-string")) +
                  " is not");
    }
    types.emplace(t.as_string());
  }
  std::string literal = "{";
  for (const std::string& t : types) literal += (literal.size() > 1 ? "," : "") + t;
  return literal + "}";
}

awaitable<Response> create_endpoint(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string given = http::required_string(body, "url");
  std::string url = co_await checked_url(given);
  std::string description = checked_description(body);
  std::string types = "{}";
  if (const auto* v = body.if_contains("event_types")) types = checked_event_types(*v);
  bool enabled = true;
  if (const auto* v = body.if_contains("enabled")) {
    if (!v->is_bool()) invalid("/enabled", "must be true or false");
    enabled = v->as_bool();
  }
  std::string secret = new_secret();
  std::string id = core::uuid_v7();
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kInsert, db::params(id, url, description, types, enabled,
                                                      seal_secret(secret, state().server_secret)));
  object out = endpoint_json(r, 0);
  co_await security::record(tx, ctx,
                            security::event("webhook_endpoint.created", "webhook_endpoint", id));
  std::string data = endpoint_event_data(out);
  co_await jobs::emit(tx, ctx, "webhook_endpoint.created", std::move(data));
  co_await tx.commit();
  out["secret"] = secret;
  co_return http::json_response(201, out);
}

awaitable<Response> list_endpoints(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kList,
                                                  db::params(page.starting_after, page.fetch()));
  array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(endpoint_json(r, i));
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> get_endpoint(RequestContext& ctx) {
  db::Result r =
      co_await db::pool().tenant_query(ctx.tenant_id, kGet, db::params(endpoint_id(ctx)));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  co_return http::json_response(200, endpoint_json(r, 0));
}

awaitable<Response> update_endpoint(RequestContext& ctx) {
  std::string id = endpoint_id(ctx);
  const object& body = http::json_body(ctx);
  std::optional<std::string> url, description, types, enabled;
  if (auto u = http::optional_string(body, "url")) url = co_await checked_url(*u);
  if (body.contains("description")) description = checked_description(body);
  if (const auto* v = body.if_contains("event_types")) types = checked_event_types(*v);
  if (const auto* v = body.if_contains("enabled")) {
    if (!v->is_bool()) invalid("/enabled", "must be true or false");
    enabled = v->as_bool() ? "true" : "false";
  }
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kUpdate, db::params(id, url, description, types, enabled));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  object out = endpoint_json(r, 0);
  object changed;
  for (const auto& [k, v] : body) changed[k] = k == "url" || k == "description" ? "(changed)" : v;
  co_await security::record(tx, ctx,
                            security::event("webhook_endpoint.updated", "webhook_endpoint", id,
                                            boost::json::serialize(changed)));
  std::string data = endpoint_event_data(out);
  co_await jobs::emit(tx, ctx, "webhook_endpoint.updated", std::move(data));
  co_await tx.commit();
  co_return http::json_response(200, out);
}

awaitable<Response> delete_endpoint(RequestContext& ctx) {
  std::string id = endpoint_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kDelete, db::params(id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  co_await security::record(tx, ctx,
                            security::event("webhook_endpoint.deleted", "webhook_endpoint", id));
  std::string data = boost::json::serialize(object{{"id", id}});
  co_await jobs::emit(tx, ctx, "webhook_endpoint.deleted", std::move(data));
  co_await tx.commit();
  co_return Response::no_content();
}

awaitable<Response> rotate_secret(RequestContext& ctx) {
  std::string id = endpoint_id(ctx);
  std::string secret = new_secret();
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r =
      co_await tx.exec(kRotate, db::params(id, seal_secret(secret, state().server_secret),
                                           state().settings.secret_overlap_seconds));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  object out = endpoint_json(r, 0);
  co_await security::record(
      tx, ctx, security::event("webhook_endpoint.secret_rotated", "webhook_endpoint", id));
  std::string data = boost::json::serialize(
      object{{"id", id}, {"previous_secret_expires_at", out.at("previous_secret_expires_at")}});
  co_await jobs::emit(tx, ctx, "webhook_endpoint.secret_rotated", std::move(data));
  co_await tx.commit();
  out["secret"] = secret;
  co_return http::json_response(200, out);
}

awaitable<Response> test_endpoint(RequestContext& ctx) {
  std::string id = endpoint_id(ctx);
  std::string event_id = core::uuid_v7();
  std::string body = event_body(event_id, "webhook.test", now_rfc3339(),
                                boost::json::serialize(object{{"endpoint_id", id}}));
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kTestDelivery, db::params(id, event_id, body));
  if (r.empty()) {
    db::Result e = co_await tx.exec(kGet, db::params(id));
    if (e.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
    throw ApiError(ErrorCode::kConflict, "The endpoint is disabled; enable it first.");
  }
  object out = delivery_json(r, 0);
  std::string payload = boost::json::serialize(object{{"delivery_id", out.at("id")}});
  co_await jobs::enqueue(tx, jobs::job(kDeliverKind, std::move(payload)));
  co_await tx.commit();
  co_return http::json_response(202, out);
}

awaitable<Response> list_deliveries(RequestContext& ctx) {
  std::string id = endpoint_id(ctx);
  http::Page page = http::page_of(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result e = co_await tx.exec(kGet, db::params(id));
  if (e.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  db::Result r = co_await tx.exec(kDeliveries, db::params(id, page.starting_after, page.fetch()));
  array data;
  std::string ids = "{";
  for (int i = 0; i < r.rows(); ++i) {
    data.push_back(delivery_json(r, i));
    ids += (i ? "," : "") + r.text(i, "id");
  }
  ids += "}";
  db::Result a = co_await tx.exec_commit(kAttempts, db::params(ids));
  for (int i = 0; i < a.rows(); ++i) {
    for (auto& d : data) {
      if (d.as_object().at("id").as_string() == a.get(i, "delivery_id")) {
        d.as_object()["attempts"].as_array().push_back(attempt_json(a, i));
        break;
      }
    }
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> retry_delivery(RequestContext& ctx) {
  std::string id = endpoint_id(ctx);
  std::string delivery_id(ctx.param("delivery_id"));
  if (!core::is_uuid(delivery_id)) throw ApiError(ErrorCode::kNotFound, "No such delivery.");
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result e = co_await tx.exec(kGet, db::params(id));
  if (e.empty()) throw ApiError(ErrorCode::kNotFound, "No such webhook endpoint.");
  if (!e.get_bool(0, "enabled")) {
    throw ApiError(ErrorCode::kConflict, "The endpoint is disabled; enable it first.");
  }
  db::Result r = co_await tx.exec(kRetry, db::params(delivery_id, id));
  if (r.empty()) {
    db::Result s = co_await tx.exec(kDeliveryStatus, db::params(delivery_id, id));
    if (s.empty()) throw ApiError(ErrorCode::kNotFound, "No such delivery.");
    throw ApiError(ErrorCode::kConflict, "The delivery is waiting for its first attempt.");
  }
  object out = delivery_json(r, 0);
  std::string payload = boost::json::serialize(object{{"delivery_id", delivery_id}});
  co_await jobs::enqueue(tx, jobs::job(kDeliverKind, std::move(payload)));
  co_await security::record(
      tx, ctx, security::event("webhook_delivery.retried", "webhook_delivery", delivery_id));
  co_await tx.commit();
  co_return http::json_response(202, out);
}

awaitable<Response> list_event_types(RequestContext&) {
  array data;
  for (const jobs::EventType& t : jobs::event_types()) {
    data.push_back(object{{"type", t.type}, {"description", t.description}});
  }
  co_return http::json_response(200, object{{"data", std::move(data)}});
}

}  // namespace

void register_routes(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  const identity::Access admins{.authenticated = true, .tenant = true, .roles = {"owner", "admin"}};
  const std::string endpoints = "/api/webhooks/endpoints";
  const std::string one = endpoints + "/{id}";
  reg.route({.method = Method::kGet,
             .path = "/api/webhooks/event-types",
             .handler = list_event_types,
             .policies = Policies(admins)});
  reg.route({.method = Method::kPost,
             .path = endpoints,
             .handler = create_endpoint,
             // A plan feature: the operator can sell webhooks as part of a plan.
             .policies = Policies(admins, billing::Feature{"webhooks"}, metering::StoresData{},
                                  security::Body{"CreateWebhookEndpointRequest"})});
  reg.route({.method = Method::kGet,
             .path = endpoints,
             .handler = list_endpoints,
             .policies = Policies(admins)});
  reg.route(
      {.method = Method::kGet, .path = one, .handler = get_endpoint, .policies = Policies(admins)});
  reg.route({.method = Method::kPatch,
             .path = one,
             .handler = update_endpoint,
             .policies = Policies(admins, security::Body{"UpdateWebhookEndpointRequest"})});
  reg.route({.method = Method::kDelete,
             .path = one,
             .handler = delete_endpoint,
             .policies = Policies(admins)});
  reg.route({.method = Method::kPost,
             .path = one + "/rotate-secret",
             .handler = rotate_secret,
             .policies = Policies(admins)});
  reg.route({.method = Method::kPost,
             .path = one + "/test",
             .handler = test_endpoint,
             .policies = Policies(admins)});
  reg.route({.method = Method::kGet,
             .path = one + "/deliveries",
             .handler = list_deliveries,
             .policies = Policies(admins)});
  reg.route({.method = Method::kPost,
             .path = one + "/deliveries/{delivery_id}/retry",
             .handler = retry_delivery,
             .policies = Policies(admins)});
}

}  // namespace hsea::webhooks
