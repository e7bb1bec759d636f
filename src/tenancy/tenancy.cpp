#include "tenancy/tenancy.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cstdio>
#include <optional>
#include <regex>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "core/slug.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "identity/auth_cache.hpp"
#include "identity/sessions.hpp"
#include "identity/user_pii.hpp"
#include "jobs/jobs.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/policies.hpp"
#include "tenancy/invitations.hpp"

namespace hsea::tenancy {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

HSEA_QUERY kPurgeDue{"tenancy_purge_due", "SELECT tenants_purge_due() AS removed"};
HSEA_QUERY kUserTenants{
    "tenancy_user_tenants",
    "SELECT * FROM auth_user_tenants($1) WHERE ($2::uuid IS NULL OR tenant_id > $2) "
    "ORDER BY tenant_id LIMIT $3"};
HSEA_QUERY kTenant{
    "tenancy_tenant",
    "SELECT id, slug, name, status, require_mfa, created_at, updated_at, deletion_scheduled_at "
    "FROM tenants"};
HSEA_QUERY kUpdateTenant{"tenancy_update_tenant",
                         "UPDATE tenants SET name = COALESCE($1, name), slug = COALESCE($2, slug), "
                         "require_mfa = COALESCE($3::boolean, require_mfa), updated_at = now() "
                         "WHERE $2::text IS NULL OR COALESCE(auth_tenant_by_slug($2) = id, true) "
                         "RETURNING id, slug, name, status, require_mfa, created_at, updated_at, "
                         "deletion_scheduled_at"};
HSEA_QUERY kScheduleDeletion{
    "tenancy_schedule_deletion",
    "UPDATE tenants SET status = 'suspended', suspended_at = now(), "
    "deletion_scheduled_at = now() + make_interval(days => $1::int), updated_at = now() "
    "RETURNING id, slug, name, status, require_mfa, created_at, updated_at, "
    "deletion_scheduled_at"};
HSEA_QUERY kMembers{"tenancy_members",
                    "SELECT m.user_id, u.email, u.name, m.role, m.created_at FROM memberships m "
                    "JOIN users u ON u.id = m.user_id WHERE ($1::uuid IS NULL OR m.user_id > $1) "
                    "ORDER BY m.user_id LIMIT $2"};
HSEA_QUERY kMember{
    "tenancy_member",
    "SELECT m.user_id, m.role, (SELECT count(*) FROM memberships WHERE role = 'owner') AS owners "
    "FROM memberships m WHERE m.user_id = $1 FOR UPDATE"};
HSEA_QUERY kLockOwners{"tenancy_lock_owners",
                       "SELECT user_id FROM memberships WHERE role = 'owner' FOR UPDATE"};
HSEA_QUERY kSetRole{"tenancy_set_role",
                    "UPDATE memberships SET role = $2, updated_at = now() WHERE user_id = $1 "
                    "RETURNING user_id, role, created_at"};
HSEA_QUERY kRemoveMember{"tenancy_remove_member", "DELETE FROM memberships WHERE user_id = $1"};
// Only during the grace period: a purged tenant is gone, and one never scheduled has nothing
// to cancel.
HSEA_QUERY kRestore{
    "tenancy_restore",
    "UPDATE tenants SET status = 'active', suspended_at = NULL, deletion_scheduled_at = NULL, "
    "updated_at = now() WHERE deletion_scheduled_at IS NOT NULL AND deletion_scheduled_at > now() "
    "RETURNING id, slug, name, status, require_mfa, created_at, updated_at, "
    "deletion_scheduled_at"};

const core::Section<Settings> kSettings{
    "tenancy",
    {core::int_setting(&Settings::deletion_grace_days, "HSEA_TENANT_DELETION_GRACE_DAYS", "30", 0,
                       3650, "a deleted tenant is suspended this long before its data is removed"),
     core::int_setting(&Settings::invitation_expiry_days, "HSEA_INVITATION_EXPIRY_DAYS", "7", 1,
                       365, "an invitation's link can be used this many days")}};

int g_deletion_grace_days = 30;  // HSEA_TENANT_DELETION_GRACE_DAYS, set by Register

object tenant_json(const db::Result& r) {
  return object{{"id", r.get(0, "id")},
                {"slug", r.get(0, "slug")},
                {"name", r.get(0, "name")},
                {"status", r.get(0, "status")},
                {"require_mfa", r.get_bool(0, "require_mfa")},
                {"created_at", r.time(0, "created_at")},
                {"updated_at", r.time(0, "updated_at")},
                {"deletion_scheduled_at", r.nullable_time(0, "deletion_scheduled_at")}};
}

awaitable<Response> list_tenants(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().query(
      kUserTenants, db::params(ctx.principal.user_id, page.starting_after, page.fetch()));
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    data.push_back(object{{"id", r.get(i, "tenant_id")},
                          {"slug", r.get(i, "slug")},
                          {"name", r.get(i, "name")},
                          {"status", r.get(i, "status")},
                          {"role", r.get(i, "role")}});
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> get_tenant(RequestContext& ctx) {
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kTenant);
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such tenant.");
  co_return http::json_response(200, tenant_json(r));
}

awaitable<Response> patch_tenant(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::optional<std::string> name, slug;
  std::vector<core::FieldError> errors;
  for (const auto& [key, value] : body) {
    if (key != "name" && key != "slug" && key != "require_mfa")
      errors.push_back({"/" + std::string(key), "is not a changeable field"});
  }
  name = http::optional_string(body, "name");
  slug = http::optional_string(body, "slug");
  std::optional<bool> require_mfa;
  if (const boost::json::value* v = body.if_contains("require_mfa")) {
    if (v->is_bool()) {
      require_mfa = v->get_bool();
    } else {
      errors.push_back({"/require_mfa", "must be true or false"});
    }
  }
  if (name && (name->empty() || name->size() > 200)) {
    errors.push_back({"/name", "must be 1 to 200 characters"});
  }
  static const std::regex kSlug("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$");
  if (slug && !std::regex_match(*slug, kSlug)) {
    errors.push_back({"/slug", "must be lower-case letters, digits and inner hyphens"});
  } else if (slug && core::is_reserved_slug(*slug)) {
    errors.push_back({"/slug", "is reserved"});
  }
  if (!errors.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.", std::move(errors));
  }
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r;
  try {
    r = co_await tx.exec(kUpdateTenant, db::params(name, slug, require_mfa));
  } catch (const db::Error& e) {
    if (e.sqlstate() == "23505") throw ApiError(ErrorCode::kConflict, "That slug is taken.");
    throw;
  }
  if (r.empty()) {
    // Another tenant has the slug: checked in the UPDATE, so the common case answers 409
    // without a failed statement (the unique constraint still guards a race).
    co_await tx.commit();
    throw ApiError(ErrorCode::kConflict, "That slug is taken.");
  }
  std::string changes = boost::json::serialize(body);
  co_await security::record(tx, ctx,
                            security::event("tenant.updated", "tenant", ctx.tenant_id, changes));
  object tenant = tenant_json(r);
  std::string data = boost::json::serialize(object{{"tenant", tenant}, {"changes", body}});
  co_await jobs::emit(tx, ctx, "tenant.updated", std::move(data));
  co_await tx.commit();
  // Sessions without a second factor are refused at once when MFA becomes required.
  if (require_mfa) identity::invalidate_auth_cache();
  co_return http::json_response(200, tenant_json(r));
}

awaitable<Response> delete_tenant(RequestContext& ctx) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kScheduleDeletion, db::params(g_deletion_grace_days));
  co_await security::record(tx, ctx,
                            security::event("tenant.deletion_scheduled", "tenant", ctx.tenant_id));
  std::string data = boost::json::serialize(tenant_json(r));
  co_await jobs::emit(tx, ctx, "tenant.deletion_scheduled", std::move(data));
  co_await tx.commit();
  identity::invalidate_auth_cache();  // ends cached access at once
  co_return http::json_response(202, tenant_json(r));
}

// Another tenant of the caller's own, made as sign-up makes one (slug from the name).
awaitable<Response> create_tenant(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string name = identity::bounded_name(body, "name");
  const std::string& user_id = ctx.principal.user_id;
  std::string slug = co_await identity::available_slug(name);
  std::string tenant_id = core::uuid_v7();
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  co_await identity::create_tenant(tx, ctx, tenant_id, slug, name, user_id);
  co_await security::record(tx, ctx, security::event("tenant.created", "tenant", tenant_id));
  db::Result r = co_await tx.exec(kTenant);
  co_await tx.commit();
  object out = tenant_json(r);
  out["role"] = "owner";
  co_return http::json_response(201, out);
}

awaitable<Response> restore_tenant(RequestContext& ctx) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kRestore);
  if (r.empty()) {
    co_await tx.commit();
    throw ApiError(ErrorCode::kConflict, "The tenant is not scheduled for deletion.");
  }
  co_await security::record(tx, ctx,
                            security::event("tenant.deletion_cancelled", "tenant", ctx.tenant_id));
  std::string data = boost::json::serialize(tenant_json(r));
  co_await jobs::emit(tx, ctx, "tenant.deletion_cancelled", std::move(data));
  co_await tx.commit();
  identity::invalidate_auth_cache();  // members are admitted again at once
  co_return http::json_response(200, tenant_json(r));
}

awaitable<Response> list_members(RequestContext& ctx) {
  // A named factory, not a braced Scope: g++ 12 destroys such a coroutine argument twice.
  http::Page page = http::page_of(ctx);
  db::Result r =
      co_await db::pool().scoped_query(db::scope(ctx.tenant_id, ctx.principal.user_id), kMembers,
                                       db::params(page.starting_after, page.fetch()));
  // Addresses and names are sealed under each member's key: one key look-up for the page.
  std::vector<identity::UserText> users = co_await identity::open_users(r);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    const identity::UserText& u = users[static_cast<std::size_t>(i)];
    data.push_back(object{{"user_id", r.get(i, "user_id")},
                          {"email", u.email},
                          {"name", u.name},
                          {"role", r.get(i, "role")},
                          {"created_at", r.time(i, "created_at")}});
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

std::string member_id(const RequestContext& ctx) {
  std::string id(ctx.param("user_id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such member.");
  return id;
}

// Owners are protected: only an owner changes or removes one, and the last owner stays.
std::optional<ApiError> owner_change_refusal(const RequestContext& ctx, const db::Result& member,
                                             bool stays_owner) {
  if (member.empty()) return ApiError(ErrorCode::kNotFound, "No such member.");
  if (member.get(0, "role") != "owner") return std::nullopt;
  if (ctx.principal.role != "owner") {
    return ApiError(ErrorCode::kForbidden, "Only an owner can change another owner.");
  }
  if (!stays_owner && member.get_int(0, "owners") <= 1) {
    return ApiError(ErrorCode::kConflict, "A tenant must keep at least one owner.");
  }
  return std::nullopt;
}

awaitable<Response> patch_member(RequestContext& ctx) {
  std::string user_id = member_id(ctx);
  const object& body = http::json_body(ctx);
  std::string role = http::required_string(body, "role");
  if (role != "owner" && role != "admin" && role != "member" && role != "billing") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/role", "must be owner, admin, member or billing"}});
  }
  if (role == "owner" && ctx.principal.role != "owner") {
    throw ApiError(ErrorCode::kForbidden, "Only an owner can make someone an owner.");
  }
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  co_await tx.exec(kLockOwners);  // serialises concurrent owner changes
  db::Result member = co_await tx.exec(kMember, db::params(user_id));
  if (auto refusal = owner_change_refusal(ctx, member, role == "owner")) {
    // End the transaction before refusing, so the owners' row locks go at once (an abandoned
    // one is also rolled back promptly, but one round trip later).
    co_await tx.commit();
    throw *refusal;
  }
  std::string before(member.get(0, "role"));
  db::Result r = co_await tx.exec(kSetRole, db::params(user_id, role));
  object change{{"from", before}, {"to", role}};
  security::AuditEvent event{.action = "member.role_changed",
                             .target_type = "user",
                             .target_id = user_id,
                             .metadata = boost::json::serialize(change)};
  co_await security::record(tx, ctx, std::move(event));
  std::string data =
      boost::json::serialize(object{{"user_id", user_id}, {"from", before}, {"to", role}});
  co_await jobs::emit(tx, ctx, "member.role_changed", std::move(data));
  co_await tx.commit();
  identity::invalidate_auth_cache();  // ends cached access at once
  co_return http::json_response(
      200, object{{"user_id", user_id}, {"role", role}, {"created_at", r.time(0, "created_at")}});
}

awaitable<Response> delete_member(RequestContext& ctx) {
  std::string user_id = member_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  co_await tx.exec(kLockOwners);
  db::Result member = co_await tx.exec(kMember, db::params(user_id));
  if (auto refusal = owner_change_refusal(ctx, member, false)) {
    co_await tx.commit();  // releases the owners' row locks (see patch_member)
    throw *refusal;
  }
  co_await tx.exec(kRemoveMember, db::params(user_id));
  co_await security::record(tx, ctx, security::event("member.removed", "user", user_id));
  std::string data = boost::json::serialize(
      object{{"user_id", user_id}, {"role", std::string(member.get(0, "role"))}});
  co_await jobs::emit(tx, ctx, "member.removed", std::move(data));
  co_await tx.commit();
  identity::invalidate_auth_cache();  // ends cached access at once
  co_return Response::no_content();
}

// The caller leaves the tenant; the last owner cannot (the trigger of migration 0004 holds the
// rule under concurrency, 409 either way).
awaitable<Response> leave_tenant(RequestContext& ctx) {
  const std::string& user_id = ctx.principal.user_id;
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  co_await tx.exec(kLockOwners);
  db::Result member = co_await tx.exec(kMember, db::params(user_id));
  if (member.empty()) {
    co_await tx.commit();
    throw ApiError(ErrorCode::kNotFound, "You are not a member of this tenant.");
  }
  std::string role(member.get(0, "role"));
  if (role == "owner" && member.get_int(0, "owners") <= 1) {
    co_await tx.commit();  // releases the owners' row locks (see patch_member)
    throw ApiError(ErrorCode::kConflict,
                   "You are the last owner: make someone else owner or delete the tenant.");
  }
  co_await tx.exec(kRemoveMember, db::params(user_id));
  co_await security::record(tx, ctx, security::event("member.left", "user", user_id));
  std::string data =
      boost::json::serialize(object{{"user_id", user_id}, {"role", role}, {"left", true}});
  co_await jobs::emit(tx, ctx, "member.removed", std::move(data));
  co_await tx.commit();
  identity::invalidate_auth_cache();  // ends cached access at once
  co_return Response::no_content();
}

}  // namespace

awaitable<std::int64_t> purge_due_tenants(db::Pool& db) {
  db::Result r = co_await db.query(kPurgeDue);
  co_return r.get_int(0, "removed");
}

namespace {
awaitable<void> purge_and_log() {
  std::int64_t purged = co_await purge_due_tenants(db::pool());
  if (purged > 0) log::info("deleted tenants purged", {{"tenants", purged}});
}
}  // namespace

long purge_due_tenants(const std::string& database_url) {
  db::BlockingConnection conn(database_url, "tenant purge");
  return conn.exec(kPurgeDue.sql).get_int(0, "removed");
}

void Register(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  using identity::Access;
  const Settings& settings = reg.settings(kSettings);
  g_deletion_grace_days = settings.deletion_grace_days;
  const db::Settings& database = reg.settings(db::settings_section());
  jobs::event_type(reg, {"tenant.updated", "The tenant's name or address changed."});
  jobs::event_type(reg, {"tenant.deletion_scheduled",
                         "An owner deleted the tenant; it is removed after the grace period."});
  jobs::event_type(
      reg, {"tenant.deletion_cancelled", "An owner cancelled the tenant's scheduled deletion."});
  jobs::event_type(reg, {"member.role_changed", "A member's role changed."});
  jobs::event_type(reg, {"member.removed", "A member was removed from the tenant."});
  const std::vector<std::string> anyone{"owner", "admin", "member", "billing"};
  const std::vector<std::string> admins{"owner", "admin"};
  reg.route({.method = Method::kGet,
             .path = "/api/tenants",
             .handler = list_tenants,
             .policies = Policies(Access{.authenticated = true})});
  reg.route(
      {.method = Method::kPost,
       .path = "/api/tenants",
       .handler = create_tenant,
       .policies = Policies(Access{.authenticated = true}, security::Body{"CreateTenantRequest"})});
  reg.route(
      {.method = Method::kGet,
       .path = "/api/tenant",
       .handler = get_tenant,
       .policies = Policies(Access{
           .authenticated = true, .tenant = true, .roles = anyone, .scopes = {"tenant:read"}})});
  reg.route(
      {.method = Method::kPatch,
       .path = "/api/tenant",
       .handler = patch_tenant,
       .policies = Policies(
           Access{
               .authenticated = true, .tenant = true, .roles = admins, .scopes = {"tenant:write"}},
           security::Body{"UpdateTenantRequest"})});
  reg.route(
      {.method = Method::kDelete,
       .path = "/api/tenant",
       .handler = delete_tenant,
       .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = {"owner"}})});
  reg.route(
      {.method = Method::kPost,
       .path = "/api/tenant/restore",
       .handler = restore_tenant,
       .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = {"owner"}})});
  reg.route({.method = Method::kPost,
             .path = "/api/tenant/leave",
             .handler = leave_tenant,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = anyone})});
  reg.route(
      {.method = Method::kGet,
       .path = "/api/members",
       .handler = list_members,
       .policies = Policies(
           Access{
               .authenticated = true, .tenant = true, .roles = anyone, .scopes = {"members:read"}},
           security::AccessEvent{"member.read"})});
  reg.route({.method = Method::kPatch,
             .path = "/api/members/{user_id}",
             .handler = patch_member,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins},
                                  security::Body{"UpdateMemberRequest"})});
  reg.route({.method = Method::kDelete,
             .path = "/api/members/{user_id}",
             .handler = delete_member,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins})});
  register_invitation_routes(reg, settings.invitation_expiry_days);
  register_settings_routes(reg);

  // Tenants past their deletion grace period are removed daily, by one node of the cluster.
  reg.periodic({.name = "tenant-purge",
                .interval = std::chrono::hours(24),
                .first_delay = std::chrono::minutes(1),
                .once_per_cluster = true,
                .run = []() -> boost::asio::awaitable<void> { return purge_and_log(); }});
  reg.command({.path = {"tenants", "purge"},
               .help = "remove tenants whose deletion grace period is over, with their data",
               .run = [&database](const core::Config&) {
                 try {
                   long removed = purge_due_tenants(database.database_url);
                   std::printf("tenants: removed %ld tenants past their deletion grace period\n",
                               removed);
                   return 0;
                 } catch (const std::exception& e) {
                   std::fprintf(stderr, "hsea tenants purge: %s\n", e.what());
                   return 1;
                 }
               }});
}

}  // namespace hsea::tenancy
