// /api/auth/* (sign-up, sign-in, refresh, sign-out), /.well-known/jwks.json and /api/me*.
#include <fmt/format.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <regex>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/slug.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/auth_cache.hpp"
#include "identity/identity.hpp"
#include "identity/module.hpp"
#include "identity/password.hpp"
#include "identity/session_cookie.hpp"
#include "identity/sessions.hpp"
#include "identity/throttle.hpp"
#include "identity/tokens.hpp"
#include "identity/user_pii.hpp"
#include "jobs/jobs.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/pii.hpp"
#include "security/policies.hpp"
#include "security/refusals.hpp"

namespace hsea::identity {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

HSEA_QUERY kInsertTenant{
    "signup_insert_tenant",
    "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3) ON CONFLICT (slug) DO NOTHING "
    "RETURNING id, slug, name, status, created_at"};
HSEA_QUERY kSlugTaken{"signup_slug_taken", "SELECT auth_tenant_by_slug($1) IS NOT NULL AS taken"};
// Not when the address belongs to an account from before sealing (found by its plaintext until
// rotate-data indexes it): the unique email_index covers the others.
HSEA_QUERY kInsertUser{
    "signup_insert_user",
    "INSERT INTO users (id, email, name, password_hash, email_index) "
    "SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM auth_user_by_email($5, $6)) "
    "RETURNING id, email, name, email_verified, mfa_enabled, created_at"};
HSEA_QUERY kInsertOwner{
    "signup_insert_owner",
    "INSERT INTO memberships (tenant_id, user_id, role) "
    "VALUES (NULLIF(current_setting('app.tenant_id', true), '')::uuid, $1, 'owner')"};
HSEA_QUERY kInsertSession{
    "auth_insert_session",
    "INSERT INTO sessions (id, user_id, kind, active_tenant_id, user_agent, ip, expires_at, "
    "mfa_at) VALUES ($1, $2, $3, NULLIF($4, '')::uuid, $5, $6, "
    "now() + make_interval(days => $7::int), CASE WHEN $8::boolean THEN now() END)"};
HSEA_QUERY kInsertChallenge{
    "auth_insert_mfa_challenge",
    "INSERT INTO mfa_challenges (token_hash, user_id, active_tenant_id, cookie, expires_at) "
    "VALUES ($1, $2, NULLIF($3, '')::uuid, $4, now() + interval '5 minutes')"};
HSEA_QUERY kChallenge{"auth_mfa_challenge", "SELECT * FROM auth_mfa_challenge($1)"};
HSEA_QUERY kChallengeFailed{
    "auth_mfa_challenge_failed",
    "UPDATE mfa_challenges SET attempts = attempts + 1 WHERE token_hash = $1"};
HSEA_QUERY kSpendChallenge{
    "auth_mfa_spend_challenge",
    "UPDATE mfa_challenges SET used_at = now() WHERE token_hash = $1 AND used_at IS NULL "
    "AND expires_at > now() AND attempts < 5"};
HSEA_QUERY kTenantSummary{"auth_tenant_summary", "SELECT slug, name FROM tenants"};
HSEA_QUERY kTenantRequiresMfa{"auth_tenant_requires_mfa", "SELECT require_mfa FROM tenants"};
HSEA_QUERY kInsertRefresh{
    "auth_insert_refresh",
    "INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at) "
    "VALUES ($1, $2, $3, now() + make_interval(days => $4::int))"};
HSEA_QUERY kUserByEmail{"auth_user_by_email", "SELECT * FROM auth_user_by_email($1, $2)"};
HSEA_QUERY kUserTenants{"auth_user_tenants", "SELECT * FROM auth_user_tenants($1)"};
HSEA_QUERY kRehash{"auth_rehash", "UPDATE users SET password_hash = $2 WHERE id = $1"};
HSEA_QUERY kUserById{"me_user",
                     "SELECT id, email, name, email_verified, mfa_enabled, created_at, updated_at "
                     "FROM users WHERE id = $1"};
HSEA_QUERY kRefreshToken{"auth_refresh_token", "SELECT * FROM auth_refresh_token($1)"};
HSEA_QUERY kSpendRefresh{
    "auth_spend_refresh",
    "UPDATE refresh_tokens SET spent_at = now() WHERE token_hash = $1 AND spent_at IS NULL "
    "AND expires_at > now()"};
HSEA_QUERY kSessionForRefresh{
    "auth_session_for_refresh",
    "UPDATE sessions SET last_seen_at = now() WHERE id = $1 AND revoked_at IS NULL "
    "AND expires_at > now() RETURNING COALESCE(active_tenant_id::text, '') AS tenant_id"};
// A cookie session's refresh: the CSRF generation in force (checked against X-CSRF-Token), then
// the next one; every earlier token of the session stops working.
HSEA_QUERY kCsrfGeneration{
    "auth_csrf_generation",
    "SELECT csrf_generation FROM sessions WHERE id = $1 AND revoked_at IS NULL "
    "AND expires_at > now() FOR UPDATE"};
HSEA_QUERY kBumpCsrf{
    "auth_bump_csrf",
    "UPDATE sessions SET csrf_generation = csrf_generation + 1, last_seen_at = now() "
    "WHERE id = $1 RETURNING csrf_generation, "
    "GREATEST(1, EXTRACT(EPOCH FROM expires_at - now())::int) AS seconds_left"};
HSEA_QUERY kRevokeSession{
    "auth_revoke_session",
    "UPDATE sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"};
HSEA_QUERY kListSessions{
    "me_sessions",
    "SELECT id, kind, user_agent, ip, created_at, last_seen_at, expires_at FROM sessions "
    "WHERE revoked_at IS NULL AND expires_at > now() AND ($1::uuid IS NULL OR id < $1) "
    "ORDER BY id DESC LIMIT $2"};
HSEA_QUERY kUpdateName{
    "me_update_name",
    "UPDATE users SET name = $2, updated_at = now() WHERE id = $1 "
    "RETURNING id, email, name, email_verified, mfa_enabled, created_at, updated_at"};
HSEA_QUERY kSoleOwner{"me_sole_owner", "SELECT * FROM auth_sole_owner_tenants($1)"};
HSEA_QUERY kDeleteUser{"me_delete_user", "DELETE FROM users WHERE id = $1"};
HSEA_QUERY kAnonymizeAudit{"me_anonymize_audit", "SELECT audit_anonymize_current_user() AS n"};

// A dummy Argon2id hash so that unknown e-mails cost as much time as wrong passwords.
const std::string& dummy_hash() {
  static const std::string kHash = hash_password("hsea-dummy-password-for-timing");
  return kHash;
}

std::string slug_from(std::string_view name) {
  std::string slug;
  for (unsigned char c : name) {
    if (std::isalnum(c) && c < 128) {
      slug.push_back(static_cast<char>(std::tolower(c)));
    } else if (!slug.empty() && slug.back() != '-') {
      slug.push_back('-');
    }
    if (slug.size() >= 40) break;
  }
  while (!slug.empty() && slug.back() == '-') slug.pop_back();
  if (slug.empty()) slug = "tenant";
  return slug;
}

object token_json(const RequestContext& ctx, const std::string& user_id,
                  const std::string& tenant_id, const Issued& issued) {
  std::int64_t now = unix_now();
  const std::int64_t lifetime = settings().access_token_seconds;
  AccessClaims claims{.user_id = user_id,
                      .tenant_id = tenant_id,
                      .session_id = issued.session_id,
                      .issued_at = now,
                      .expires_at = now + lifetime};
  std::string access = state().keys.keys().sign(claims);
  return object{{"access_token", access},
                {"refresh_token", issued.refresh_token},
                {"token_type", "Bearer"},
                {"expires_in", lifetime}};
}

// ------------------------------------------------------------------------------- handlers

awaitable<Response> signup(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string email = normalized_email(body);
  std::string password = http::required_string(body, "password");
  std::string name = bounded_name(body, "name");
  std::string organization = bounded_name(body, "organization_name");
  if (std::string weak = password_weakness(password); !weak.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "The password is too weak.",
                   {{"/password", weak}});
  }
  bool cookie = wants_cookie(body);
  // Each sign-up costs an Argon2id hash: limited per client address before any hashing.
  if (auto wait =
          state().signups.admit(ctx.request.remote_ip, settings().signups_per_ip_per_hour)) {
    throw ApiError(ErrorCode::kRateLimited, "Too many sign-ups from this address; try again later.")
        .retry_after(*wait);
  }

  std::string slug = co_await available_slug(organization);
  auto hash_work = [password] { return hash_password(password); };
  std::string hash = co_await runtime::cpu_pool().run(std::move(hash_work));

  std::string tenant_id = core::uuid_v7(), user_id = core::uuid_v7();
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  // Sealed under the new user's key, made in this transaction before the row that it belongs to.
  UserText sealed = co_await seal_user(tx, user_id, email, name);
  db::Result user;
  try {
    user = co_await tx.exec(kInsertUser, db::params(user_id, sealed.email, sealed.name, hash,
                                                    email_index(email), email));
  } catch (const db::Error& e) {
    if (e.sqlstate() != "23505") throw;
  }
  if (user.empty()) {
    throw ApiError(ErrorCode::kConflict, "An account with this e-mail address already exists.");
  }
  NewTenant tenant = co_await create_tenant(tx, ctx, tenant_id, slug, organization, user_id);
  Issued issued = co_await open_session(tx, ctx, user_id, tenant_id, cookie);
  ctx.tenant_id = tenant_id;
  security::AuditEvent event{.action = "user.signed_up",
                             .target_type = "user",
                             .target_id = user_id,
                             .actor_type = "user",
                             .actor_id = user_id};
  co_await security::record(tx, ctx, event);
  // HSEA-015: the address is verified through the link in this mail (account_flows.cpp).
  co_await send_email_verification(tx, user_id, email, name, false);
  co_await tx.commit();

  object user_out = co_await user_json(user);
  object out{{"user", user_out},
             {"tenant", object{{"id", tenant_id}, {"slug", tenant.slug}, {"name", tenant.name}}}};
  co_return session_response(ctx, 201, std::move(out), cookie, user_id, tenant_id, issued);
}

awaitable<Response> login(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string email = normalized_email(body);
  std::string password = http::required_string(body, "password");
  auto requested_tenant = http::optional_string(body, "tenant_id");
  bool cookie = wants_cookie(body);
  LoginThrottle& throttle = *state().throttle;

  db::Result found = co_await db::pool().query(kUserByEmail, db::params(email_index(email), email));
  // Failures count against the account the look-up found, so every spelling the look-up
  // matches (case, or anything else citext folds) shares one budget; an address without an
  // account is counted by its normalised text, and throttled just the same.
  std::string throttle_key =
      found.empty() ? "email:" + email : "user:" + std::string(found.get(0, "id"));
  co_await throttle.refuse_if_blocked(throttle_key, ctx.request.remote_ip,
                                      "Too many failed sign-ins; try again later.");
  std::string hash =
      found.empty() || found.is_null(0, 1) ? std::string() : std::string(found.get(0, 1));
  // Unknown accounts verify against the dummy hash, on the pool like any other (its first use
  // computes it: never on an I/O thread).
  auto verify_work = [hash, password] {
    return verify_password(hash.empty() ? dummy_hash() : hash, password);
  };
  bool ok = co_await runtime::cpu_pool().run(std::move(verify_work));
  // An account without a password (invited, SSO) never signs in with one.
  ok = ok && !found.empty() && !found.is_null(0, 1);
  std::string user_id = found.empty() ? std::string() : std::string(found.get(0, "id"));
  db::Result tenants;
  if (!user_id.empty()) tenants = co_await db::pool().query(kUserTenants, db::params(user_id));

  if (!ok) {
    co_await throttle.record_failure(throttle_key, ctx.request.remote_ip);
    // Each tenant of a known account sees its failed sign-ins.
    for (int i = 0; i < tenants.rows(); ++i) {
      co_await security::record_in(tenants.text(i, "tenant_id"), ctx,
                                   security::event("auth.login_failed", "user", user_id));
    }
    throw ApiError(ErrorCode::kUnauthorized, "The e-mail address or password is wrong.");
  }

  std::string tenant_id;
  // The requested tenant, else the oldest one the user can use now (active, or owned).
  int tenant_row = -1;
  for (int i = 0; i < tenants.rows(); ++i) {
    bool usable = tenants.get(i, "status") == "active" || tenants.get(i, "role") == "owner";
    if (requested_tenant ? tenants.get(i, "tenant_id") == *requested_tenant : usable) {
      tenant_row = i;
      break;
    }
  }
  if (requested_tenant && tenant_row < 0) {
    throw ApiError(ErrorCode::kForbidden, "You are not a member of that tenant.");
  }
  if (tenant_row >= 0) tenant_id = std::string(tenants.get(tenant_row, "tenant_id"));

  if (password_needs_rehash(hash)) {
    auto rehash_work = [password] { return hash_password(password); };
    std::string fresh = co_await runtime::cpu_pool().run(std::move(rehash_work));
    co_await db::pool().scoped_query(db::user_scope(user_id), kRehash, db::params(user_id, fresh));
  }
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  db::Result user = co_await tx.exec(kUserById, db::params(user_id));
  if (user.get_bool(0, "mfa_enabled")) {
    // The password was right; the session opens at the second step (POST /api/auth/mfa/verify).
    std::string token = core::random_hex(32);
    co_await tx.exec(kInsertChallenge,
                     db::params(core::sha256_hex(token), user_id, tenant_id, cookie));
    co_await tx.commit();
    co_return http::json_response(
        200, object{{"mfa_required", true}, {"mfa_token", token}, {"expires_in", 300}});
  }
  Issued issued = co_await open_session(tx, ctx, user_id, tenant_id, cookie);
  bool enrol = false;
  if (!tenant_id.empty()) {
    co_await security::record(
        tx, ctx, security::event_by("user", user_id, "auth.login", "session", issued.session_id));
    enrol = (co_await tx.exec(kTenantRequiresMfa)).get_bool(0, "require_mfa");
  }
  co_await tx.commit();

  object user_out = co_await user_json(user);
  object out{{"user", user_out}};
  // The tenant admits this session only after the user turns MFA on (/api/me/mfa/totp).
  if (enrol) out["mfa_enrollment_required"] = true;
  if (tenant_row >= 0) {
    out["tenant"] = object{{"id", tenant_id},
                           {"slug", tenants.get(tenant_row, "slug")},
                           {"name", tenants.get(tenant_row, "name")}};
  } else {
    out["tenant"] = nullptr;
  }
  co_return session_response(ctx, 200, std::move(out), cookie, user_id, tenant_id, issued);
}

// Sign-in's second step: the challenge from login and a TOTP code or a recovery code.
awaitable<Response> verify_mfa(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string token_hash = core::sha256_hex(http::required_string(body, "mfa_token"));
  auto code = http::optional_string(body, "code");
  auto recovery_code = http::optional_string(body, "recovery_code");
  if (code.has_value() == recovery_code.has_value()) {
    throw ApiError(ErrorCode::kValidationFailed, "Send either a code or a recovery code.",
                   {{"/code", "exactly one of code and recovery_code is required"}});
  }
  db::Result found = co_await db::pool().query(kChallenge, db::params(token_hash));
  if (found.empty() || !found.get_bool(0, "usable")) {
    throw ApiError(ErrorCode::kUnauthorized, "The sign-in has expired; sign in again.");
  }
  std::string user_id = found.text(0, "user_id");
  std::string tenant_id = found.optional(0, "active_tenant_id").value_or("");
  bool cookie = found.get_bool(0, "cookie");
  LoginThrottle& throttle = *state().throttle;
  const std::string throttle_key = "user:" + user_id;
  co_await throttle.refuse_if_blocked(throttle_key, ctx.request.remote_ip,
                                      "Too many failed sign-ins; try again later.");
  std::optional<Issued> issued;
  db::Result user;
  {
    db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
    if (co_await check_second_factor(tx, user_id, code, recovery_code) &&
        (co_await tx.exec(kSpendChallenge, db::params(token_hash))).affected() == 1) {
      issued = co_await open_session(tx, ctx, user_id, tenant_id, cookie, true);
      user = co_await tx.exec(kUserById, db::params(user_id));
      if (!tenant_id.empty()) {
        security::AuditEvent event =
            security::event_by("user", user_id, "auth.login", "session", issued->session_id);
        event.metadata = recovery_code ? R"({"mfa":"recovery_code"})" : R"({"mfa":"totp"})";
        co_await security::record(tx, ctx, event);
      }
      co_await tx.commit();
    }
  }
  if (!issued) {
    // Counted on the challenge (five wrong codes end it) and on the account's sign-in budget.
    co_await throttle.record_failure(throttle_key, ctx.request.remote_ip);
    co_await db::pool().scoped_query(db::user_scope(user_id), kChallengeFailed,
                                     db::params(token_hash));
    if (!tenant_id.empty()) {
      co_await security::record_in(tenant_id, ctx,
                                   security::event("auth.mfa_failed", "user", user_id));
    }
    throw ApiError(ErrorCode::kUnauthorized, "The code is wrong or was already used.");
  }
  object user_out = co_await user_json(user);
  object out{{"user", user_out}};
  if (!tenant_id.empty()) {
    db::Result t = co_await db::pool().tenant_query(tenant_id, kTenantSummary);
    if (!t.empty()) {
      out["tenant"] =
          object{{"id", tenant_id}, {"slug", t.get(0, "slug")}, {"name", t.get(0, "name")}};
    }
  }
  if (!out.contains("tenant")) out["tenant"] = nullptr;
  co_return session_response(ctx, 200, std::move(out), cookie, user_id, tenant_id, *issued);
}

// POST /api/auth/refresh without a refresh token, by a cookie session (the web UI): the session
// gets a new CSRF token (in the body and the hsea_csrf cookie). The request must carry the
// current one, as any unsafe cookie request does.
awaitable<Response> refresh_cookie_session(RequestContext& ctx, SessionCookie cookie) {
  db::Transaction tx = co_await db::pool().begin(db::user_scope(cookie.user_id));
  db::Result current = co_await tx.exec(kCsrfGeneration, db::params(cookie.session_id));
  if (current.empty()) {
    co_await tx.commit();
    throw ApiError(ErrorCode::kUnauthorized, "The session has ended.");
  }
  std::string expected =
      csrf_token(config().secret_key, cookie.session_id, current.get_int(0, "csrf_generation"));
  if (!core::constant_time_equal(ctx.request.header("x-csrf-token"), expected)) {
    co_await tx.commit();
    security::RefusalEvent e{.kind = security::Refusal::kCsrf,
                             .tenant_id = cookie.tenant_id,
                             .action = "security.csrf_refused",
                             .target_type = "session",
                             .target_id = cookie.session_id,
                             .actor_type = "user",
                             .actor_id = cookie.user_id,
                             .metadata = {{"reason", "refresh"},
                                          {"method", "POST"},
                                          {"path", log::valid_utf8(ctx.request.path, 512)}}};
    co_await security::audit_refusal(ctx, std::move(e));
    throw ApiError(ErrorCode::kCsrfFailed,
                   "Send the session's current CSRF token in X-CSRF-Token to refresh it.");
  }
  db::Result bumped = co_await tx.exec(kBumpCsrf, db::params(cookie.session_id));
  co_await tx.commit();
  invalidate_auth_cache();  // cached generations of this session are stale at once
  std::string token =
      csrf_token(config().secret_key, cookie.session_id, bumped.get_int(0, "csrf_generation"));
  Response r = http::json_response(200, object{{"csrf_token", token}});
  // The session cookie again too: its access starts anew (HSEA_ACCESS_TOKEN_SECONDS), like a
  // refreshed access token's.
  set_session_cookies(r, config(), cookie, static_cast<int>(bumped.get_int(0, "seconds_left")),
                      bumped.get_int(0, "csrf_generation"));
  co_return r;
}

awaitable<Response> refresh(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  if (!body.contains("refresh_token")) {
    if (auto cookie = read_session_cookie(ctx)) {
      co_return co_await refresh_cookie_session(ctx, std::move(*cookie));
    }
  }
  std::string token = http::required_string(body, "refresh_token");
  std::string token_hash = core::sha256_hex(token);
  db::Result found = co_await db::pool().query(kRefreshToken, db::params(token_hash));
  if (found.empty()) throw ApiError(ErrorCode::kUnauthorized, "The refresh token is not valid.");
  std::string user_id(found.get(0, "user_id")), session_id(found.get(0, "session_id"));

  if (!found.is_null(0, found.column("spent_at"))) {
    // A spent token presented again: it was stolen or replayed. End the whole family.
    db::Transaction tx = co_await db::pool().begin(db::user_scope(user_id));
    co_await tx.exec(kRevokeSession, db::params(session_id));
    co_await tx.commit();
    invalidate_auth_cache();  // ends cached access at once
    db::Result tenants = co_await db::pool().query(kUserTenants, db::params(user_id));
    for (int i = 0; i < tenants.rows(); ++i) {
      co_await security::record_in(
          tenants.text(i, "tenant_id"), ctx,
          security::event_by("user", user_id, "auth.refresh_token_reused", "session", session_id));
    }
    throw ApiError(ErrorCode::kUnauthorized,
                   "The refresh token was already used; every token of its session is revoked.");
  }

  db::Transaction tx = co_await db::pool().begin(db::user_scope(user_id));
  db::Result spent = co_await tx.exec(kSpendRefresh, db::params(token_hash));
  db::Result session = co_await tx.exec(kSessionForRefresh, db::params(session_id));
  if (spent.affected() != 1 || session.empty()) {
    throw ApiError(ErrorCode::kUnauthorized, "The refresh token is not valid.");
  }
  std::string tenant_id(session.get(0, "tenant_id"));
  Issued issued{session_id, core::random_hex(32)};
  co_await tx.exec(kInsertRefresh, db::params(core::sha256_hex(issued.refresh_token), session_id,
                                              user_id, settings().refresh_token_days));
  co_await tx.commit();
  co_return http::json_response(200, token_json(ctx, user_id, tenant_id, issued));
}

awaitable<Response> logout(RequestContext& ctx) {
  const auto& p = ctx.principal;
  if (p.kind != http::Principal::Kind::kUser) {
    throw ApiError(ErrorCode::kBadRequest, "Only a signed-in user can sign out.");
  }
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, p.user_id));
  co_await tx.exec(kRevokeSession, db::params(p.session_id));
  if (!ctx.tenant_id.empty()) {
    co_await security::record(tx, ctx, security::event("auth.logout", "session", p.session_id));
  }
  co_await tx.commit();
  invalidate_auth_cache();  // ends cached access at once
  Response r = Response::no_content();
  if (p.via_cookie) set_session_cookies(r, config(), std::nullopt, 0);
  co_return r;
}

awaitable<Response> jwks(RequestContext& ctx) {
  Response r = Response::json(200, state().keys.keys().jwks_json());
  r.set_header("cache-control", "public, max-age=300");
  co_return r;
}

awaitable<Response> get_me(RequestContext& ctx) {
  const std::string& user_id = ctx.principal.user_id;
  db::Result user =
      co_await db::pool().scoped_query(db::user_scope(user_id), kUserById, db::params(user_id));
  if (user.empty()) throw ApiError(ErrorCode::kNotFound, "The account no longer exists.");
  db::Result tenants = co_await db::pool().query(kUserTenants, db::params(user_id));
  object out = co_await user_json(user);
  out["updated_at"] = user.time(0, "updated_at");
  boost::json::array list;
  for (int i = 0; i < tenants.rows(); ++i) {
    list.push_back(object{{"id", tenants.get(i, "tenant_id")},
                          {"slug", tenants.get(i, "slug")},
                          {"name", tenants.get(i, "name")},
                          {"status", tenants.get(i, "status")},
                          {"role", tenants.get(i, "role")}});
  }
  out["tenants"] = std::move(list);
  out["current_tenant_id"] =
      ctx.tenant_id.empty() ? boost::json::value(nullptr) : boost::json::value(ctx.tenant_id);
  co_return http::json_response(200, out);
}

awaitable<Response> patch_me(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  for (const auto& [key, value] : body) {
    if (key != "name") {
      throw ApiError(ErrorCode::kValidationFailed, "Only the name can be changed here.",
                     {{"/" + std::string(key), "is not a changeable field"}});
    }
  }
  std::string name = bounded_name(body, "name");
  const std::string& user_id = ctx.principal.user_id;
  security::pii::Owner owner = security::pii::user_owner(user_id);
  std::string sealed = co_await security::pii::seal(db::pool(), owner, "users.name", name);
  db::Result user = co_await db::pool().scoped_query(db::user_scope(user_id), kUpdateName,
                                                     db::params(user_id, sealed));
  object out = co_await user_json(user);
  out["updated_at"] = user.time(0, "updated_at");
  co_return http::json_response(200, out);
}

awaitable<Response> delete_me(RequestContext& ctx) {
  const std::string& user_id = ctx.principal.user_id;
  db::Result sole = co_await db::pool().query(kSoleOwner, db::params(user_id));
  if (!sole.empty()) {
    throw ApiError(ErrorCode::kConflict,
                   "You are the only owner of a tenant: make someone else owner or delete the "
                   "tenant first.");
  }
  db::Result tenants = co_await db::pool().query(kUserTenants, db::params(user_id));
  // Removes the profile, password hash, memberships, sessions and tokens. Audit entries keep
  // only the user's id, which no longer leads to any personal data.
  // The check above is not atomic with the delete: a co-owner leaving or stepping down at the
  // same moment can make this user a last owner after it. The memberships_keep_an_owner
  // trigger (migration 0004) refuses the delete then, so the statement runs first and its
  // transaction stays open while the audit entries are written: a refused deletion is never
  // audited, and an audited one is committed right after.
  db::Transaction tx = co_await db::pool().begin(db::user_scope(user_id));
  try {
    co_await tx.exec(kDeleteUser, db::params(user_id));
  } catch (const db::Error& e) {
    if (e.constraint() != "memberships_keep_an_owner") throw;
    throw ApiError(ErrorCode::kConflict,
                   "You are the only owner of a tenant: make someone else owner or delete the "
                   "tenant first.");
  }
  for (int i = 0; i < tenants.rows(); ++i) {
    co_await security::record_in(tenants.text(i, "tenant_id"), ctx,
                                 security::event("user.deleted", "user", user_id));
  }
  // The user's addresses and user agents leave the audit log of every tenant (the entries just
  // written included: they are committed, so this statement sees them).
  co_await tx.exec(kAnonymizeAudit);
  co_await tx.commit();
  invalidate_auth_cache();
  Response r = Response::no_content();
  if (ctx.principal.via_cookie) set_session_cookies(r, config(), std::nullopt, 0);
  co_return r;
}

// A short human description of the device behind a session ("Firefox on Linux"), from its
// User-Agent; other clients are named by their product token ("hsea-cli").
std::string device_label(std::string_view ua) {
  if (ua.empty()) return "Unknown device";
  auto has = [ua](std::string_view s) { return ua.find(s) != std::string_view::npos; };
  std::string_view browser;
  if (has("Edg/")) {
    browser = "Edge";
  } else if (has("OPR/")) {
    browser = "Opera";
  } else if (has("Firefox/")) {
    browser = "Firefox";
  } else if (has("Chrome/") || has("Chromium/")) {
    browser = "Chrome";
  } else if (has("Safari/")) {
    browser = "Safari";
  }
  std::string_view os;
  if (has("iPhone") || has("iPad")) {
    os = "iOS";
  } else if (has("Android")) {
    os = "Android";
  } else if (has("Windows")) {
    os = "Windows";
  } else if (has("Mac OS X") || has("Macintosh")) {
    os = "macOS";
  } else if (has("CrOS")) {
    os = "ChromeOS";
  } else if (has("Linux")) {
    os = "Linux";
  }
  if (!browser.empty() && !os.empty()) return fmt::format("{} on {}", browser, os);
  if (!browser.empty()) return std::string(browser);
  if (!os.empty()) return fmt::format("Browser on {}", os);
  std::string_view product = ua.substr(0, ua.find_first_of("/ "));
  return log::valid_utf8(product, 64);  // at a character boundary: the label is JSON text
}

awaitable<Response> list_sessions(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r =
      co_await db::pool().scoped_query(db::user_scope(ctx.principal.user_id), kListSessions,
                                       db::params(page.starting_after, page.fetch()));
  // Sealed under the user's key: one look-up of the keys for the page, then opened.
  std::vector<std::string> sealed;
  for (int i = 0; i < r.rows(); ++i) {
    sealed.emplace_back(r.get(i, "user_agent"));
    sealed.emplace_back(r.get(i, "ip"));
  }
  co_await security::pii::load_keys(db::pool(), sealed);
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) {
    std::string user_agent =
        security::pii::open("sessions.user_agent", r.get(i, "user_agent")).value_or("");
    data.push_back(object{{"id", r.get(i, "id")},
                          {"kind", r.get(i, "kind")},
                          {"device", device_label(user_agent)},
                          {"user_agent", user_agent},
                          {"ip", security::pii::open("sessions.ip", r.get(i, "ip")).value_or("")},
                          {"created_at", r.time(i, "created_at")},
                          {"last_seen_at", r.time(i, "last_seen_at")},
                          {"expires_at", r.time(i, "expires_at")},
                          {"current", r.get(i, "id") == ctx.principal.session_id}});
  }
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> revoke_session(RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such session.");
  const std::string& user_id = ctx.principal.user_id;
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
  db::Result r = co_await tx.exec(kRevokeSession, db::params(id));
  if (r.affected() == 0) throw ApiError(ErrorCode::kNotFound, "No such session.");
  if (!ctx.tenant_id.empty()) {
    co_await security::record(tx, ctx, security::event("session.revoked", "session", id));
  }
  co_await tx.commit();
  invalidate_auth_cache();  // ends cached access at once
  co_return Response::no_content();
}

}  // namespace

// ------------------------------------------------------ sign-up's pieces (sessions.hpp)

std::string normalized_email(const object& body, std::string_view field) {
  std::string email = http::required_string(body, field);
  std::ranges::transform(email, email.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::regex kEmail(R"(^[^@\s]+@[^@\s]+\.[^@\s]+$)");
  // No control characters either (NUL is refused for every body before this): the address is
  // looked up, throttled and stored exactly as checked here.
  bool control = std::ranges::any_of(email, [](unsigned char c) { return c < 0x20 || c == 0x7f; });
  if (email.size() > 254 || control || !std::regex_match(email, kEmail)) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the e-mail address.",
                   {{"/" + std::string(field), "must be an e-mail address"}});
  }
  return email;
}

std::string bounded_name(const object& body, std::string_view field) {
  std::string name = http::required_string(body, field);
  if (name.empty() || name.size() > 200) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/" + std::string(field), "must be 1 to 200 characters"}});
  }
  return name;
}

awaitable<object> user_json(const db::Result& r) {
  std::vector<UserText> opened = co_await open_users(r);
  co_return object{{"id", r.get(0, "id")},
                   {"email", opened.at(0).email},
                   {"name", opened.at(0).name},
                   {"email_verified", r.get_bool(0, "email_verified")},
                   {"mfa_enabled", r.get_bool(0, "mfa_enabled")},
                   {"created_at", r.time(0, "created_at")}};
}

// Creates a session and its first refresh token inside the caller's transaction (whose scope
// names the user).
awaitable<Issued> open_session(db::Transaction& tx, const RequestContext& ctx, std::string user_id,
                               std::string tenant_id, bool cookie, bool second_factor) {
  Issued out{core::uuid_v7(), core::random_hex(32)};
  // Whatever the client sent: cut at a character boundary, undecodable bytes replaced (raw
  // bytes would make PostgreSQL refuse the row, and with it the sign-in).
  std::string user_agent = log::valid_utf8(ctx.request.header("user-agent"), 512);
  std::string ip = log::valid_utf8(ctx.request.remote_ip, 64);
  // Personal data, sealed under the user's key (the user may have been created by this very
  // transaction: the transaction's own seal).
  security::pii::Owner owner = security::pii::user_owner(user_id);
  user_agent = co_await security::pii::seal(tx, owner, "sessions.user_agent", user_agent);
  ip = co_await security::pii::seal(tx, owner, "sessions.ip", ip);
  co_await tx.exec(kInsertSession,
                   db::params(out.session_id, user_id, cookie ? "cookie" : "token", tenant_id,
                              user_agent, ip, settings().refresh_token_days, second_factor));
  co_await tx.exec(kInsertRefresh, db::params(core::sha256_hex(out.refresh_token), out.session_id,
                                              user_id, settings().refresh_token_days));
  co_return out;
}

// Session cookies instead of tokens in the body, for the web UI.
bool wants_cookie(const object& body) {
  auto s = http::optional_string(body, "session");
  if (s && *s != "cookie" && *s != "token") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the fields.",
                   {{"/session", "must be \"token\" or \"cookie\""}});
  }
  return s && *s == "cookie";
}

Response session_response(const RequestContext& ctx, int status, object body, bool cookie,
                          const std::string& user_id, const std::string& tenant_id,
                          const Issued& issued) {
  if (!cookie) {
    for (auto& [k, v] : token_json(ctx, user_id, tenant_id, issued)) body[k] = v;
    return http::json_response(status, body);
  }
  body["csrf_token"] = csrf_token(config().secret_key, issued.session_id, 0);  // a new session
  Response r = http::json_response(status, body);
  set_session_cookies(r, config(), SessionCookie{user_id, issued.session_id, tenant_id},
                      settings().refresh_token_days * 86400);
  return r;
}

awaitable<std::string> available_slug(std::string name) {
  std::string slug = slug_from(name);
  // A reserved slug (www, api, admin, ...) is treated as taken: the tenant gets a suffix.
  bool taken = core::is_reserved_slug(slug);
  if (!taken)
    taken = (co_await db::pool().query(kSlugTaken, db::params(slug))).get_bool(0, "taken");
  if (taken) slug = slug.substr(0, 35) + "-" + core::random_hex(2);
  co_return slug;
}

namespace {
std::vector<TenantCreatedHook>& tenant_created_hooks() {
  static std::vector<TenantCreatedHook> hooks;  // filled at registration, read-only after
  return hooks;
}
}  // namespace

void on_tenant_created(TenantCreatedHook hook) { tenant_created_hooks().push_back(hook); }

awaitable<NewTenant> create_tenant(db::Transaction& tx, const RequestContext& ctx, std::string id,
                                   std::string slug, std::string name, std::string owner_id) {
  db::Result tenant = co_await tx.exec(kInsertTenant, db::params(id, slug, name));
  // Another sign-up (or a deleted tenant) may hold the slug by now: pick another.
  for (int attempt = 0; tenant.empty() && attempt < 5; ++attempt) {
    slug = slug_from(name).substr(0, 35) + "-" + core::random_hex(3);
    tenant = co_await tx.exec(kInsertTenant, db::params(id, slug, name));
  }
  if (tenant.empty()) {
    throw ApiError(ErrorCode::kConflict, "Could not choose an address for the organization.");
  }
  co_await tx.exec(kInsertOwner, db::params(owner_id));
  NewTenant out{id, std::string(tenant.get(0, "slug")), std::string(tenant.get(0, "name"))};
  security::Actor actor{.kind = security::Actor::Kind::kUser, .id = owner_id};
  object created{{"id", id}, {"slug", out.slug}, {"name", out.name}, {"owner", owner_id}};
  std::string data = boost::json::serialize(created);
  co_await jobs::emit(tx, actor, ctx.request_id, "tenant.created", std::move(data));
  std::string member = boost::json::serialize(object{{"user_id", owner_id}, {"role", "owner"}});
  co_await jobs::emit(tx, actor, ctx.request_id, "member.added", std::move(member));
  for (TenantCreatedHook hook : tenant_created_hooks()) co_await hook(tx, ctx, id);
  co_return out;
}

void register_auth_routes(runtime::Registrar& reg) {
  jobs::event_type(reg, {"tenant.created", "A tenant was created by sign-up."});
  jobs::event_type(reg, {"member.added", "A user became a member of the tenant."});
  using http::Method;
  using http::Policies;
  // Unmetered: signing in and the signed-in user stay reachable past a quota.
  using metering::Unmetered;
  using security::Body;
  const Access user{.authenticated = true};
  reg.route({.method = Method::kPost,
             .path = "/api/auth/signup",
             .handler = signup,
             .policies = Policies(Body{"SignupRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/login",
             .handler = login,
             .policies = Policies(Body{"LoginRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/mfa/verify",
             .handler = verify_mfa,
             .policies = Policies(Body{"MfaVerifyRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/refresh",
             .handler = refresh,
             .policies = Policies(Body{"RefreshRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/logout",
             .handler = logout,
             .policies = Policies(user, Unmetered{})});
  reg.route({.method = Method::kGet, .path = "/.well-known/jwks.json", .handler = jwks});
  reg.route({.method = Method::kGet,
             .path = "/api/me",
             .handler = get_me,
             .policies = Policies(user, Unmetered{})});
  reg.route({.method = Method::kPatch,
             .path = "/api/me",
             .handler = patch_me,
             .policies = Policies(user, Body{"UpdateMeRequest"}, Unmetered{})});
  reg.route({.method = Method::kDelete,
             .path = "/api/me",
             .handler = delete_me,
             .policies = Policies(user, Unmetered{})});
  reg.route({.method = Method::kGet,
             .path = "/api/me/sessions",
             .handler = list_sessions,
             .policies = Policies(user, Unmetered{})});
  reg.route({.method = Method::kDelete,
             .path = "/api/me/sessions/{id}",
             .handler = revoke_session,
             .policies = Policies(user, Unmetered{})});
}

}  // namespace hsea::identity
