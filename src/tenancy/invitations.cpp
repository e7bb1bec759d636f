// Invitations (HSEA-017): an owner or admin invites an e-mail address with a role; the invitee
// accepts with the mailed token, signed in or as a new user. The one way into a tenant.
#include "tenancy/invitations.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <optional>
#include <string>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "identity/password.hpp"
#include "identity/sessions.hpp"
#include "identity/user_pii.hpp"
#include "jobs/jobs.hpp"
#include "mail/mail.hpp"
#include "metering/metering.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"
#include "security/audit.hpp"
#include "security/pii.hpp"
#include "security/policies.hpp"

namespace hsea::tenancy {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

// The state of an invitation, in SQL (the same CASE as invitation_by_token in migration 0011).
#define HSEA_INVITATION_STATE                                                  \
  "CASE WHEN accepted_at IS NOT NULL THEN 'used' WHEN revoked_at IS NOT NULL " \
  "THEN 'revoked' WHEN expires_at <= now() THEN 'expired' ELSE 'open' END AS state"

// Users' addresses and names are sealed (identity/user_pii.hpp): opened after reading, looked
// up by their index ($1), or by their text ($2) in rows from before sealing.
HSEA_QUERY kInviter{"invitations_inviter",
                    "SELECT email, name, email_verified FROM users WHERE id = $1"};
HSEA_QUERY kIsMember{"invitations_is_member",
                     "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id "
                     "WHERE u.email_index = $1 OR (u.email_index IS NULL AND lower(u.email) = $2)"};
// An open invitation past its expiry no longer holds the address: it is closed (as revoked)
// before a new one is made for it.
// Invitations' addresses are sealed under the tenant's key and found by their blind index ($1)
// or, in rows from before sealing, by their text ($2).
#define HSEA_INVITATION_EMAIL_IS "(email_index = $1 OR (email_index IS NULL AND lower(email) = $2))"
HSEA_QUERY kCloseExpired{"invitations_close_expired",
                         "UPDATE invitations SET revoked_at = now(), updated_at = now() "
                         "WHERE " HSEA_INVITATION_EMAIL_IS
                         " AND accepted_at IS NULL AND revoked_at IS NULL "
                         "AND expires_at <= now()"};
HSEA_QUERY kInsert{
    "invitations_insert",
    "INSERT INTO invitations (tenant_id, id, email, role, token_hash, invited_by, expires_at, "
    "email_index) SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid, $3, $4, $5, "
    "$6, NULLIF($7, '')::uuid, now() + make_interval(days => $8::int), $1 "
    "WHERE NOT EXISTS (SELECT 1 FROM invitations WHERE " HSEA_INVITATION_EMAIL_IS
    " AND accepted_at IS NULL AND revoked_at IS NULL) ON CONFLICT DO NOTHING "
    "RETURNING id, email::text AS email, role, created_at, expires_at, "
    "accepted_at, " HSEA_INVITATION_STATE};
HSEA_QUERY kTenant{"invitations_tenant", "SELECT slug, name, require_mfa FROM tenants"};
HSEA_QUERY kList{"invitations_list",
                 "SELECT id, email::text AS email, role, invited_by, created_at, expires_at, "
                 "accepted_at, " HSEA_INVITATION_STATE
                 " FROM invitations WHERE ($1::uuid IS NULL OR id > $1) ORDER BY id LIMIT $2"};
HSEA_QUERY kLock{"invitations_lock", "SELECT id, email::text AS email, role, " HSEA_INVITATION_STATE
                                     " FROM invitations WHERE id = $1 FOR UPDATE"};
HSEA_QUERY kRevoke{"invitations_revoke",
                   "UPDATE invitations SET revoked_at = now(), updated_at = now() WHERE id = $1"};
HSEA_QUERY kRenew{"invitations_renew",
                  "UPDATE invitations SET token_hash = $2, updated_at = now(), "
                  "expires_at = now() + make_interval(days => $3::int) WHERE id = $1 "
                  "RETURNING id, email::text AS email, role, created_at, expires_at, "
                  "accepted_at, " HSEA_INVITATION_STATE};
HSEA_QUERY kByToken{"invitations_by_token", "SELECT * FROM invitation_by_token($1)"};
// Single use: only an open invitation is spent, once, whatever runs concurrently.
HSEA_QUERY kSpend{
    "invitations_spend",
    "UPDATE invitations SET accepted_at = now(), accepted_by = $2, updated_at = now() "
    "WHERE token_hash = $1 AND accepted_at IS NULL AND revoked_at IS NULL "
    "AND expires_at > now() RETURNING id, role"};
HSEA_QUERY kAddMember{"invitations_add_member",
                      "INSERT INTO memberships (tenant_id, user_id, role) "
                      "VALUES (NULLIF(current_setting('app.tenant_id', true), '')::uuid, $1, $2) "
                      "ON CONFLICT DO NOTHING RETURNING created_at"};
HSEA_QUERY kUserEmail{"invitations_user_email", "SELECT email, name FROM users WHERE id = $1"};
HSEA_QUERY kUserExists{"invitations_user_exists", "SELECT * FROM auth_user_by_email($1, $2)"};
// The address received the token, so accepting it proves the address: verified at once.
HSEA_QUERY kInsertUser{"invitations_insert_user",
                       "INSERT INTO users (id, email, name, password_hash, email_verified, "
                       "email_index) SELECT $1, $2, $3, $4, true, $5 "
                       "WHERE NOT EXISTS (SELECT 1 FROM auth_user_by_email($5, $6)) "
                       "RETURNING id, email, name, email_verified, mfa_enabled, created_at"};

#undef HSEA_INVITATION_STATE
#undef HSEA_INVITATION_EMAIL_IS

std::string invitation_email_index(const std::string& email) {
  return security::pii::blind_index("invitations.email", email);
}

// The rows' addresses, opened (one key look-up for all).
awaitable<std::vector<std::string>> invitation_emails(const db::Result& r, db::Transaction* tx) {
  std::vector<std::string> sealed;
  for (int i = 0; i < r.rows(); ++i) sealed.emplace_back(r.get(i, "email"));
  if (tx != nullptr) {
    co_await security::pii::load_keys(*tx, sealed);
  } else {
    co_await security::pii::load_keys(db::pool(), sealed);
  }
  std::vector<std::string> out;
  for (const auto& v : sealed) {
    out.push_back(security::pii::open("invitations.email", v).value_or(""));
  }
  co_return out;
}

int g_expiry_days = 7;     // HSEA_INVITATION_EXPIRY_DAYS
std::string g_accept_url;  // ${HSEA_PUBLIC_URL}/accept-invitation

int rank(std::string_view role) {
  if (role == "owner") return 3;
  if (role == "admin") return 2;
  return 1;  // member, billing: neither manages anyone
}

object invitation_json(const db::Result& r, int i, const std::string& email) {
  object out{{"id", r.get(i, "id")},
             {"email", email},
             {"role", r.get(i, "role")},
             {"status", r.get(i, "state")},
             {"created_at", r.time(i, "created_at")},
             {"expires_at", r.time(i, "expires_at")}};
  out["accepted_at"] = r.nullable_time(i, "accepted_at");
  return out;
}

std::string invitation_id(const RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such invitation.");
  return id;
}

// The problem for an invitation that cannot be used any more.
ApiError closed_invitation(std::string_view state) {
  if (state == "used") {
    return ApiError(ErrorCode::kInvitationUsed, "This invitation was already accepted.");
  }
  if (state == "revoked") {
    return ApiError(ErrorCode::kInvitationRevoked, "This invitation was revoked.");
  }
  return ApiError(ErrorCode::kInvitationExpired, "This invitation has expired; ask for a new one.");
}

void check_role(const RequestContext& ctx, std::string_view role, std::string_view doing) {
  if (rank(role) > rank(ctx.principal.role)) {
    throw ApiError(ErrorCode::kForbidden,
                   "Only an owner can " + std::string(doing) + " an owner invitation.");
  }
}

// Mails the token in the invitation's transaction: a rolled-back invitation sends nothing.
awaitable<void> send_invitation_mail(db::Transaction& tx, const db::Result& inviter,
                                     std::string email, std::string role, std::string token) {
  identity::UserText who = (co_await identity::open_users(inviter, &tx)).at(0);
  object data{{"inviter", object{{"name", who.name}, {"email", who.email}}},
              {"role", role},
              {"link", g_accept_url + "?token=" + token},
              {"button", "Accept the invitation"},
              {"expires_days", std::to_string(g_expiry_days)}};
  mail::Message m = mail::message("invitation", email, "", boost::json::serialize(data));
  co_await mail::send(tx, std::move(m));
}

awaitable<db::Result> verified_inviter(db::Transaction& tx, const RequestContext& ctx) {
  db::Result inviter = co_await tx.exec(kInviter, db::params(ctx.principal.user_id));
  if (inviter.empty() || !inviter.get_bool(0, "email_verified")) {
    throw ApiError(ErrorCode::kEmailUnverified,
                   "Verify your e-mail address before inviting anyone.");
  }
  co_return inviter;
}

awaitable<Response> create_invitation(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string email = identity::normalized_email(body);
  std::string role = http::required_string(body, "role");
  if (role != "owner" && role != "admin" && role != "member" && role != "billing") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/role", "must be owner, admin, member or billing"}});
  }
  if (rank(role) > rank(ctx.principal.role)) {
    throw ApiError(ErrorCode::kForbidden, "You cannot invite someone to a role above your own.");
  }
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, ctx.principal.user_id));
  db::Result inviter = co_await verified_inviter(tx, ctx);
  if (!(co_await tx.exec(kIsMember, db::params(identity::email_index(email), email))).empty()) {
    throw ApiError(ErrorCode::kConflict, "That address already belongs to a member.");
  }
  std::string index = invitation_email_index(email);
  co_await tx.exec(kCloseExpired, db::params(index, email));
  std::string token = core::random_hex(32);
  security::pii::Owner owner = security::pii::tenant_owner(ctx.tenant_id);
  std::string sealed = co_await security::pii::seal(tx, owner, "invitations.email", email);
  db::Result r = co_await tx.exec(
      kInsert, db::params(index, email, core::uuid_v7(), sealed, role, core::sha256_hex(token),
                          ctx.principal.user_id, g_expiry_days));
  if (r.empty()) {
    throw ApiError(ErrorCode::kConflict,
                   "That address already has an open invitation: resend it instead.");
  }
  std::string id(r.get(0, "id"));
  co_await send_invitation_mail(tx, inviter, email, role, token);
  // Neither the audit entry nor the event names the address (HSEA-047): the invitation they
  // name holds it, sealed; the audit log and webhook receivers would otherwise keep copies
  // that outlive it. A receiver reads it with GET /api/invitations.
  object meta{{"role", role}};
  co_await security::record(
      tx, ctx,
      security::event("invitation.created", "invitation", id, boost::json::serialize(meta)));
  std::string data = boost::json::serialize(object{{"invitation_id", id}, {"role", role}});
  co_await jobs::emit(tx, ctx, "member.invited", std::move(data));
  co_await tx.commit();
  co_return http::json_response(201, invitation_json(r, 0, email));
}

awaitable<Response> list_invitations(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kList,
                                                  db::params(page.starting_after, page.fetch()));
  std::vector<std::string> emails = co_await invitation_emails(r, nullptr);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    data.push_back(invitation_json(r, i, emails[static_cast<std::size_t>(i)]));
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

// Another tenant's invitation id is not found here (RLS).
awaitable<db::Result> locked_invitation(db::Transaction& tx, const std::string& id) {
  db::Result r = co_await tx.exec(kLock, db::params(id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such invitation.");
  co_return r;
}

awaitable<Response> revoke_invitation(RequestContext& ctx) {
  std::string id = invitation_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await locked_invitation(tx, id);
  check_role(ctx, r.get(0, "role"), "revoke");
  std::string state(r.get(0, "state"));
  if (state == "used" || state == "revoked") throw closed_invitation(state);
  co_await tx.exec(kRevoke, db::params(id));
  co_await security::record(tx, ctx, security::event("invitation.revoked", "invitation", id));
  co_await tx.commit();
  co_return Response::no_content();
}

awaitable<Response> resend_invitation(RequestContext& ctx) {
  std::string id = invitation_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, ctx.principal.user_id));
  db::Result r = co_await locked_invitation(tx, id);
  check_role(ctx, r.get(0, "role"), "resend");
  std::string state(r.get(0, "state"));
  if (state == "used" || state == "revoked") throw closed_invitation(state);
  db::Result inviter = co_await verified_inviter(tx, ctx);
  // A new token replaces the old one's hash: the earlier mail's link stops working.
  std::string token = core::random_hex(32);
  db::Result renewed =
      co_await tx.exec(kRenew, db::params(id, core::sha256_hex(token), g_expiry_days));
  std::string email = (co_await invitation_emails(renewed, &tx)).at(0);
  std::string role(renewed.get(0, "role"));
  co_await send_invitation_mail(tx, inviter, email, role, token);
  co_await security::record(tx, ctx, security::event("invitation.resent", "invitation", id));
  co_await tx.commit();
  co_return http::json_response(200, invitation_json(renewed, 0, email));
}

// A refused acceptance, audited in the invitation's tenant, then thrown.
awaitable<void> refuse_acceptance(const RequestContext& ctx, const std::string& tenant_id,
                                  const std::string& invitation, std::string reason,
                                  ApiError error) {
  std::string meta = boost::json::serialize(object{{"reason", reason}});
  co_await security::record_in(
      tenant_id, ctx, security::event("invitation.accept_refused", "invitation", invitation, meta));
  throw error;
}

// Spends the token and adds the member in `tx` (scope: the invitation's tenant and the user).
awaitable<std::string> join(db::Transaction& tx, const RequestContext& ctx,
                            const std::string& token_hash, const std::string& user_id,
                            const std::string& invitation) {
  db::Result spent = co_await tx.exec(kSpend, db::params(token_hash, user_id));
  if (spent.empty()) {
    // Accepted, revoked or resent by a concurrent request since it was read.
    throw ApiError(ErrorCode::kInvitationUsed, "This invitation can no longer be accepted.");
  }
  std::string role(spent.get(0, "role"));
  if ((co_await tx.exec(kAddMember, db::params(user_id, role))).empty()) {
    throw ApiError(ErrorCode::kConflict, "You are already a member of this tenant.");
  }
  security::Actor actor{.kind = security::Actor::Kind::kUser, .id = user_id};
  security::Origin origin = security::origin_of(ctx);
  object meta{{"role", role}};
  security::AuditEvent accepted = security::event("invitation.accepted", "invitation", invitation,
                                                  boost::json::serialize(meta));
  co_await security::record(tx, actor, origin, std::move(accepted));
  security::AuditEvent added =
      security::event("member.added", "user", user_id, boost::json::serialize(meta));
  co_await security::record(tx, actor, origin, std::move(added));
  std::string data = boost::json::serialize(
      object{{"user_id", user_id}, {"role", role}, {"invitation_id", invitation}});
  co_await jobs::emit(tx, actor, ctx.request_id, "member.added", std::move(data));
  co_return role;
}

awaitable<Response> accept_invitation(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string token = http::required_string(body, "token");
  std::string token_hash = core::sha256_hex(token);
  db::Result found = co_await db::pool().query(kByToken, db::params(token_hash));
  if (found.empty()) {
    // No tenant to audit it in: a token that never existed, or one replaced by a resend.
    throw ApiError(ErrorCode::kInvitationInvalid, "This invitation link is not valid.");
  }
  std::string tenant_id(found.get(0, "tenant_id")), invitation(found.get(0, "id"));
  std::string email = (co_await invitation_emails(found, nullptr)).at(0);
  std::string state(found.get(0, "state"));
  if (state != "open") {
    co_await refuse_acceptance(ctx, tenant_id, invitation, state, closed_invitation(state));
  }
  if (found.get(0, "tenant_status") != "active") {
    co_await refuse_acceptance(
        ctx, tenant_id, invitation, "tenant_suspended",
        ApiError(ErrorCode::kForbidden, "This tenant does not accept new members now."));
  }
  const http::Principal& p = ctx.principal;
  if (p.kind == http::Principal::Kind::kApiKey) {
    throw ApiError(ErrorCode::kForbidden, "An API key cannot accept an invitation.");
  }

  if (p.kind == http::Principal::Kind::kUser) {
    // A signed-in user accepts an invitation sent to their own address only.
    db::Result me = co_await db::pool().scoped_query(db::user_scope(p.user_id), kUserEmail,
                                                     db::params(p.user_id));
    std::string my_email;
    if (!me.empty()) my_email = (co_await identity::open_users(me)).at(0).email;
    std::ranges::transform(my_email, my_email.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (me.empty() || my_email != email) {
      co_await refuse_acceptance(ctx, tenant_id, invitation, "other_address",
                                 ApiError(ErrorCode::kInvitationInvalid,
                                          "This invitation was sent to another e-mail address."));
    }
    db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, p.user_id));
    co_await metering::require_seat(tx, tenant_id, false);
    std::string role = co_await join(tx, ctx, token_hash, p.user_id, invitation);
    db::Result tenant = co_await tx.exec(kTenant);
    co_await tx.commit();
    co_return http::json_response(200, object{{"tenant", object{{"id", tenant_id},
                                                                {"slug", tenant.get(0, "slug")},
                                                                {"name", tenant.get(0, "name")}}},
                                              {"role", role}});
  }

  // A new user: the invitation's address, a password and a name; answered as sign-up is.
  auto password = http::optional_string(body, "password");
  if (!password) {
    throw ApiError(ErrorCode::kUnauthorized,
                   "Sign in to accept, or send a password and a name to create your account.");
  }
  std::string name = identity::bounded_name(body, "name");
  if (std::string weak = identity::password_weakness(*password); !weak.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "The password is too weak.",
                   {{"/password", weak}});
  }
  bool cookie = identity::wants_cookie(body);
  db::Result exists =
      co_await db::pool().query(kUserExists, db::params(identity::email_index(email), email));
  if (!exists.empty()) {
    throw ApiError(ErrorCode::kConflict,
                   "An account with this e-mail address exists: sign in to accept.");
  }
  auto hash_work = [pw = *password] { return identity::hash_password(pw); };
  std::string hash = co_await runtime::cpu_pool().run(std::move(hash_work));
  std::string user_id = core::uuid_v7();
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  co_await metering::require_seat(tx, tenant_id, false);
  // Sealed under the new user's key, made in this transaction before the user's row.
  identity::UserText sealed = co_await identity::seal_user(tx, user_id, email, name);
  db::Result user;
  try {
    user = co_await tx.exec(kInsertUser, db::params(user_id, sealed.email, sealed.name, hash,
                                                    identity::email_index(email), email));
  } catch (const db::Error& e) {
    if (e.sqlstate() != "23505") throw;
  }
  if (user.empty()) {
    throw ApiError(ErrorCode::kConflict,
                   "An account with this e-mail address exists: sign in to accept.");
  }
  co_await join(tx, ctx, token_hash, user_id, invitation);
  identity::Issued issued = co_await identity::open_session(tx, ctx, user_id, tenant_id, cookie);
  db::Result tenant = co_await tx.exec(kTenant);
  co_await tx.commit();
  object user_out = co_await identity::user_json(user);
  object out{{"user", user_out},
             {"tenant", object{{"id", tenant_id},
                               {"slug", tenant.get(0, "slug")},
                               {"name", tenant.get(0, "name")}}}};
  // As at sign-in: the tenant admits the session once the user turns MFA on.
  if (tenant.get_bool(0, "require_mfa")) out["mfa_enrollment_required"] = true;
  co_return identity::session_response(ctx, 201, std::move(out), cookie, user_id, tenant_id,
                                       issued);
}

using Handler = awaitable<Response> (*)(RequestContext&);

// Every refused invitation action (another tenant's id, a role above the caller's, an
// unverified inviter, a closed invitation, bad input) is audited in the caller's tenant, after
// the refused transaction has ended so that the entry is not rolled back with it.
awaitable<Response> refusals_audited(RequestContext& ctx, Handler handler, std::string action) {
  std::optional<ApiError> refused;
  try {
    co_return co_await handler(ctx);
  } catch (const ApiError& e) {
    if (core::error_info(e.code()).status >= 500) throw;
    refused = e;
  }
  const core::ErrorInfo& info = core::error_info(refused->code());
  object meta{{"action", action}, {"code", info.code}, {"status", info.status}};
  std::string target(ctx.param("id"));
  co_await security::record_in(
      ctx.tenant_id, ctx,
      security::event("invitation.refused", "invitation", log::valid_utf8(target, 64),
                      boost::json::serialize(meta)));
  throw *refused;
}

awaitable<Response> create_audited(RequestContext& ctx) {
  return refusals_audited(ctx, create_invitation, "create");
}
awaitable<Response> revoke_audited(RequestContext& ctx) {
  return refusals_audited(ctx, revoke_invitation, "revoke");
}
awaitable<Response> resend_audited(RequestContext& ctx) {
  return refusals_audited(ctx, resend_invitation, "resend");
}

}  // namespace

void register_invitation_routes(runtime::Registrar& reg, int expiry_days) {
  // Sealed under the tenant's key, with its blind index, for rotation (which also seals and
  // indexes rows from before sealing).
  security::pii::register_sealed_column({.table = "invitations",
                                         .id_column = "id",
                                         .column = "email",
                                         .purpose = "invitations.email",
                                         .owner_column = "tenant_id",
                                         .owner_is_tenant = true,
                                         .index_column = "email_index"});
  using http::Method;
  using http::Policies;
  using identity::Access;
  g_expiry_days = expiry_days;
  g_accept_url = reg.config().public_url + "/accept-invitation";
  jobs::event_type(reg, {"member.invited", "Someone was invited to join the tenant."});
  const std::vector<std::string> admins{"owner", "admin"};
  reg.route({.method = Method::kPost,
             .path = "/api/invitations",
             .handler = create_audited,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins},
                                  security::Body{"CreateInvitationRequest"})});
  reg.route(
      {.method = Method::kGet,
       .path = "/api/invitations",
       .handler = list_invitations,
       .policies = Policies(Access{
           .authenticated = true, .tenant = true, .roles = admins, .scopes = {"members:read"}})});
  reg.route({.method = Method::kDelete,
             .path = "/api/invitations/{id}",
             .handler = revoke_audited,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins})});
  reg.route({.method = Method::kPost,
             .path = "/api/invitations/{id}/resend",
             .handler = resend_audited,
             .policies = Policies(Access{.authenticated = true, .tenant = true, .roles = admins})});
  // Public, but a signed-in caller is recognised: they accept as themselves.
  reg.route({.method = Method::kPost,
             .path = "/api/invitations/accept",
             .handler = accept_invitation,
             .policies = Policies(Access{.credentials_if_sent = true},
                                  security::Body{"AcceptInvitationRequest"})});
}

}  // namespace hsea::tenancy
