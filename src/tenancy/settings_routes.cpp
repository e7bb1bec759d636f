// The tenant's settings resource: GET/PATCH /api/tenant/settings. Today it holds the origins
// whose pages may call the API with the browser's credentials (CORS, HSEA-043).
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "identity/access.hpp"
#include "identity/identity.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/cors.hpp"
#include "security/policies.hpp"
#include "tenancy/tenancy.hpp"

namespace hsea::tenancy {
namespace {

using boost::asio::awaitable;
using boost::json::array;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

// Origins travel as JSON text both ways: an origin holds ':' and '/' and, for IPv6, '[' and ']',
// which an array literal would need quoted.
HSEA_QUERY kSettings{"tenant_settings_get",
                     "SELECT array_to_json(allowed_origins)::text AS allowed_origins, updated_at "
                     "FROM tenant_settings"};
HSEA_QUERY kLockSettings{
    "tenant_settings_lock",
    "SELECT array_to_json(allowed_origins)::text AS allowed_origins FROM tenant_settings "
    "FOR UPDATE"};
HSEA_QUERY kUpsertSettings{
    "tenant_settings_upsert",
    "INSERT INTO tenant_settings (tenant_id, allowed_origins) VALUES "
    "(NULLIF(current_setting('app.tenant_id', true), '')::uuid, "
    " ARRAY(SELECT jsonb_array_elements_text($1::jsonb))) "
    "ON CONFLICT (tenant_id) DO UPDATE SET allowed_origins = EXCLUDED.allowed_origins, "
    "updated_at = now() "
    "RETURNING array_to_json(allowed_origins)::text AS allowed_origins, updated_at"};

object settings_json(const db::Result& r) {
  if (r.empty()) return object{{"allowed_origins", array{}}, {"updated_at", nullptr}};
  return object{{"allowed_origins", boost::json::parse(r.get(0, "allowed_origins"))},
                {"updated_at", r.time(0, "updated_at")}};
}

awaitable<Response> get_settings(RequestContext& ctx) {
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kSettings);
  co_return http::json_response(200, settings_json(r));
}

// Every entry normalised (security::normalize_origin), duplicates dropped, order kept; a bad
// entry is a 422 naming it (/allowed_origins/<index>) and nothing is stored.
array allowed_origins(const object& body) {
  const boost::json::value* list = body.if_contains("allowed_origins");
  if (list == nullptr || !list->is_array()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/allowed_origins", "must be an array of origins"}});
  }
  std::vector<core::FieldError> errors;
  if (list->as_array().size() > static_cast<std::size_t>(security::kMaxAllowedOrigins)) {
    errors.push_back(
        {"/allowed_origins",
         "must hold at most " + std::to_string(security::kMaxAllowedOrigins) + " origins"});
  }
  array out;
  std::size_t index = 0;
  for (const boost::json::value& v : list->as_array()) {
    std::string field = "/allowed_origins/" + std::to_string(index++);
    std::string normal, reason;
    if (!v.is_string()) {
      errors.push_back({field, "must be a string"});
    } else if (!security::normalize_origin(v.get_string(), normal, reason)) {
      errors.push_back({field, reason});
    } else if (std::ranges::find(out, boost::json::value(normal)) == out.end()) {
      out.emplace_back(normal);
    }
  }
  if (!errors.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.", std::move(errors));
  }
  return out;
}

awaitable<Response> patch_settings(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  for (const auto& [key, value] : body) {
    if (key != "allowed_origins") {
      throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                     {{"/" + std::string(key), "is not a changeable field"}});
    }
  }
  array origins = allowed_origins(body);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result before = co_await tx.exec(kLockSettings);
  db::Result r = co_await tx.exec(kUpsertSettings, db::params(boost::json::serialize(origins)));
  object change{
      {"allowed_origins",
       object{{"from", before.empty() ? boost::json::value(array{})
                                      : boost::json::parse(before.get(0, "allowed_origins"))},
              {"to", origins}}}};
  security::AuditEvent event{.action = "tenant.settings_updated",
                             .target_type = "tenant",
                             .target_id = ctx.tenant_id,
                             .metadata = boost::json::serialize(change)};
  co_await security::record(tx, ctx, std::move(event));
  co_await tx.commit();
  security::invalidate_cors_cache();  // this node's CORS checks see the new list at once
  co_return http::json_response(200, settings_json(r));
}

}  // namespace

void register_settings_routes(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  using identity::Access;
  // The CORS step resolves the tenant from the Host by identity's rule, as tenant resolution
  // does (security sits below identity, so the rule is handed down here).
  security::set_cors_host_slug(identity::tenant_slug_of_host);
  const std::vector<std::string> admins{"owner", "admin"};
  reg.route(
      {.method = Method::kGet,
       .path = "/api/tenant/settings",
       .handler = get_settings,
       .policies = Policies(Access{
           .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:read"}})});
  reg.route(
      {.method = Method::kPatch,
       .path = "/api/tenant/settings",
       .handler = patch_settings,
       .policies = Policies(
           Access{
               .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:write"}},
           security::Body{"UpdateTenantSettingsRequest"})});
}

}  // namespace hsea::tenancy
