// HSEA-048: API keys. A key is "hsea_<12 hex prefix>_<43 base64url chars>" (256 random bits
// in the secret); only its SHA-256 is stored, and it is shown once.
#include <sodium.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <unordered_map>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/auth_cache.hpp"
#include "identity/identity.hpp"
#include "identity/module.hpp"
#include "identity/tokens.hpp"
#include "jobs/jobs.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/policies.hpp"

namespace hsea::identity {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

// The scopes a key may hold: read (safe methods), write (any method), and per resource.
const std::vector<std::string> kScopes{
    "read",         "write",         "tenant:read", "tenant:write", "members:read",
    "audit:read",   "api_keys:read", "jobs:read",   "jobs:write",   "events:read",
    "billing:read", "usage:read",    "usage:write"};

HSEA_QUERY kInsert{
    "api_key_insert",
    "INSERT INTO api_keys (tenant_id, id, name, prefix, secret_hash, scopes, created_by, "
    "expires_at) VALUES (NULLIF(current_setting('app.tenant_id', true), '')::uuid, $1, $2, $3, "
    "$4, $5::text[], NULLIF($6, '')::uuid, $7::timestamptz) RETURNING id, name, prefix, "
    "scopes::text AS scopes, created_by, created_at, expires_at, last_used_at, request_count, "
    "revoked_at"};
HSEA_QUERY kList{
    "api_key_list",
    "SELECT id, name, prefix, scopes::text AS scopes, created_by, created_at, expires_at, "
    "last_used_at, request_count, revoked_at FROM api_keys WHERE revoked_at IS NULL "
    "AND ($1::uuid IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"};
HSEA_QUERY kGet{
    "api_key_get",
    "SELECT id, name, prefix, scopes::text AS scopes, created_by, created_at, expires_at, "
    "last_used_at, request_count, revoked_at FROM api_keys WHERE id = $1 AND revoked_at IS NULL"};
HSEA_QUERY kRevoke{"api_key_revoke",
                   "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"};
// The old key keeps working until the grace period ends (or its own expiry, if sooner).
HSEA_QUERY kExpireSoon{
    "api_key_expire_soon",
    "WITH old AS (SELECT id, expires_at FROM api_keys WHERE id = $1 AND revoked_at IS NULL "
    "FOR UPDATE) "
    "UPDATE api_keys k SET expires_at = LEAST(COALESCE(k.expires_at, 'infinity'), "
    "now() + make_interval(secs => $2::int)) FROM old WHERE k.id = old.id "
    "RETURNING k.name, k.scopes::text AS scopes, k.expires_at, "
    "old.expires_at::text AS original_expires_at"};

HSEA_QUERY kAddUsage{"api_key_add_usage",
                     "UPDATE api_keys SET request_count = request_count + $2, "
                     "last_used_at = GREATEST(last_used_at, now()) WHERE id = $1"};

struct UsageCount {
  std::string tenant_id;
  std::int64_t requests = 0;
};
// key id -> requests not yet written; one map per I/O thread, so no lock.
thread_local std::unordered_map<std::string, UsageCount> t_usage;

struct NewKey {
  std::string key;
  std::string prefix;
};

NewKey make_key() {
  std::string prefix = core::random_hex(6);
  std::string secret(32, '\0');
  randombytes_buf(secret.data(), secret.size());
  return {"hsea_" + prefix + "_" + base64url_encode(secret), prefix};
}

boost::json::array scopes_json(const db::Result& r, int row) {
  boost::json::array out;
  for (const auto& scope : r.words(row, "scopes")) out.emplace_back(scope);
  return out;
}

object key_json(const db::Result& r, int row) {
  return object{{"id", r.get(row, "id")},
                {"name", r.get(row, "name")},
                {"prefix", r.get(row, "prefix")},
                {"scopes", scopes_json(r, row)},
                {"created_by", r.nullable(row, "created_by")},
                {"created_at", r.time(row, "created_at")},
                {"expires_at", r.nullable_time(row, "expires_at")},
                {"last_used_at", r.nullable_time(row, "last_used_at")},
                {"request_count", r.get_int(row, "request_count")}};
}

std::string scopes_literal(const object& body) {
  auto it = body.find("scopes");
  if (it == body.end() || !it->value().is_array() || it->value().as_array().empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/scopes", "must be a non-empty array of scopes"}});
  }
  std::vector<std::string> scopes;
  for (const auto& s : it->value().as_array()) {
    if (!s.is_string() || std::ranges::find(kScopes, std::string(s.as_string())) == kScopes.end()) {
      std::string allowed;
      for (const auto& k : kScopes) allowed += (allowed.empty() ? "" : ", ") + k;
      throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                     {{"/scopes", "each scope must be one of " + allowed}});
    }
    scopes.emplace_back(s.as_string());
  }
  std::ranges::sort(scopes);
  scopes.erase(std::unique(scopes.begin(), scopes.end()), scopes.end());
  std::string literal = "{";
  for (const auto& s : scopes) literal += (literal.size() > 1 ? "," : "") + s;
  return literal + "}";
}

std::string key_id(const RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such API key.");
  return id;
}

awaitable<Response> create_key(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string name = http::required_string(body, "name");
  if (name.empty() || name.size() > 100) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/name", "must be 1 to 100 characters"}});
  }
  std::string scopes = scopes_literal(body);
  auto expires_at = http::optional_string(body, "expires_at");
  NewKey key = make_key();
  std::string id = core::uuid_v7();
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r =
      co_await tx.exec(kInsert, db::params(id, name, key.prefix, core::sha256_hex(key.key), scopes,
                                           ctx.principal.user_id, expires_at));
  co_await security::record(tx, ctx, security::event("api_key.created", "api_key", id));
  object out = key_json(r, 0);
  std::string data = boost::json::serialize(out);
  co_await jobs::emit(tx, ctx, "api_key.created", std::move(data));
  co_await tx.commit();
  out["key"] = key.key;
  co_return http::json_response(201, out);
}

awaitable<Response> list_keys(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kList,
                                                  db::params(page.starting_after, page.fetch()));
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(key_json(r, i));
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> get_key(RequestContext& ctx) {
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kGet, db::params(key_id(ctx)));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such API key.");
  co_return http::json_response(200, key_json(r, 0));
}

awaitable<Response> delete_key(RequestContext& ctx) {
  std::string id = key_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kRevoke, db::params(id));
  if (r.affected() == 0) throw ApiError(ErrorCode::kNotFound, "No such API key.");
  co_await security::record(tx, ctx, security::event("api_key.deleted", "api_key", id));
  std::string data = boost::json::serialize(object{{"id", id}});
  co_await jobs::emit(tx, ctx, "api_key.deleted", std::move(data));
  co_await tx.commit();
  invalidate_auth_cache();  // ends cached access at once
  co_return Response::no_content();
}

awaitable<Response> rotate_key(RequestContext& ctx) {
  std::string id = key_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result old =
      co_await tx.exec(kExpireSoon, db::params(id, settings().api_key_rotation_grace_seconds));
  if (old.empty()) throw ApiError(ErrorCode::kNotFound, "No such API key.");
  NewKey key = make_key();
  std::string new_id = core::uuid_v7();
  db::Result r = co_await tx.exec(
      kInsert, db::params(new_id, std::string(old.get(0, "name")), key.prefix,
                          core::sha256_hex(key.key), std::string(old.get(0, "scopes")),
                          ctx.principal.user_id, old.optional(0, "original_expires_at")));
  co_await security::record(
      tx, ctx,
      security::event("api_key.rotated", "api_key", id, "{\"replaced_by\":\"" + new_id + "\"}"));
  object out = key_json(r, 0);
  out["replaces"] = object{{"id", id}, {"expires_at", old.time(0, "expires_at")}};
  std::string data = boost::json::serialize(out);
  co_await jobs::emit(tx, ctx, "api_key.rotated", std::move(data));
  co_await tx.commit();
  invalidate_auth_cache();  // ends cached access at once
  out["key"] = key.key;
  co_return http::json_response(201, out);
}

}  // namespace

void count_api_key_use(const std::string& tenant_id, const std::string& key_id) {
  UsageCount& c = t_usage[key_id];
  if (c.tenant_id.empty()) c.tenant_id = tenant_id;
  ++c.requests;
}

awaitable<void> flush_api_key_usage() {
  std::unordered_map<std::string, UsageCount> pending;
  pending.swap(t_usage);
  for (auto& [key_id, count] : pending) {
    try {
      co_await db::pool().tenant_query(count.tenant_id, kAddUsage,
                                       db::params(key_id, count.requests));
    } catch (const std::exception& e) {
      log::warn("API key usage not recorded", {{"key_id", key_id}, {"error", e.what()}});
    }
  }
}

void register_api_key_routes(runtime::Registrar& reg) {
  jobs::event_type(reg, {"api_key.created", "An API key was created (its secret is never sent)."});
  jobs::event_type(reg, {"api_key.rotated", "An API key was replaced by a new one."});
  jobs::event_type(reg, {"api_key.deleted", "An API key was revoked."});
  using http::Method;
  using http::Policies;
  const std::vector<std::string> admins{"owner", "admin"};
  const Access manage{.authenticated = true, .tenant = true, .roles = admins};
  const Access read{
      .authenticated = true, .tenant = true, .roles = admins, .scopes = {"api_keys:read"}};
  const security::AccessEvent read_event{"api_key.read"};
  reg.route({.method = Method::kPost,
             .path = "/api/api-keys",
             .handler = create_key,
             .policies = Policies(manage, security::Body{"CreateApiKeyRequest"})});
  reg.route({.method = Method::kGet,
             .path = "/api/api-keys",
             .handler = list_keys,
             .policies = Policies(read, read_event)});
  reg.route({.method = Method::kGet,
             .path = "/api/api-keys/{id}",
             .handler = get_key,
             .policies = Policies(read, read_event)});
  reg.route({.method = Method::kDelete,
             .path = "/api/api-keys/{id}",
             .handler = delete_key,
             .policies = Policies(manage)});
  reg.route({.method = Method::kPost,
             .path = "/api/api-keys/{id}/rotate",
             .handler = rotate_key,
             .policies = Policies(manage)});
}

}  // namespace hsea::identity
