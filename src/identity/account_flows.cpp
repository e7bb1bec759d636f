// Account flows (HSEA-015, HSEA-016): e-mail verification, password reset and change, e-mail
// change, and their mails. Every flow mails a single-use token: random (core::random_hex), kept
// only as its SHA-256 (account_tokens, user-owned), spent with a conditional UPDATE in the
// user's scope so that two concurrent uses cannot both win, and valid for its purpose's
// lifetime (identity's settings). Every use, success or refusal, is audited in each tenant of
// the user, in the transaction of the change; a refused token that leads to no user is logged.
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <regex>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "identity/auth_cache.hpp"
#include "identity/identity.hpp"
#include "identity/module.hpp"
#include "identity/password.hpp"
#include "identity/sessions.hpp"
#include "identity/throttle.hpp"
#include "identity/tokens.hpp"
#include "identity/user_pii.hpp"
#include "jobs/jobs.hpp"
#include "mail/mail.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/pii.hpp"
#include "security/policies.hpp"

namespace hsea::identity {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

constexpr const char* kVerify = "verify_email";
constexpr const char* kReset = "reset_password";
constexpr const char* kChange = "change_email";
// seal_text's context of a password-reset request in its job's payload.
constexpr std::string_view kResetRequestContext = "hsea password reset request v1";

HSEA_QUERY kInsertToken{
    "account_insert_token",
    "INSERT INTO account_tokens (token_hash, user_id, purpose, email, expires_at) "
    "VALUES ($1, $2, $3, $4, now() + make_interval(mins => $5::int))"};
HSEA_QUERY kFindToken{"account_find_token", "SELECT * FROM account_token($1)"};
// The one way a token is used: only the first of concurrent uses updates the row.
HSEA_QUERY kSpendToken{
    "account_spend_token",
    "UPDATE account_tokens SET used_at = now() WHERE token_hash = $1 AND purpose = $2 "
    "AND used_at IS NULL AND expires_at > now() RETURNING user_id"};
HSEA_QUERY kSpendOthers{
    "account_spend_other_tokens",
    "UPDATE account_tokens SET used_at = now() WHERE user_id = $1 AND purpose = $2 "
    "AND used_at IS NULL"};
// Addresses and names are sealed (open_users); look-ups by address take its index and text.
HSEA_QUERY kUser{"account_user",
                 "SELECT email, name, password_hash, email_verified FROM users WHERE id = $1"};
HSEA_QUERY kUserByEmail{"account_user_by_email", "SELECT id FROM auth_user_by_email($1, $2)"};
HSEA_QUERY kEmailTaken{"account_email_taken",
                       "SELECT count(*) > 0 AS taken FROM auth_user_by_email($1, $2)"};
HSEA_QUERY kUserTenants{"account_user_tenants", "SELECT tenant_id FROM auth_user_tenants($1)"};
// Audit entries take app.tenant_id: one per tenant of the user, in the change's transaction.
HSEA_QUERY kSetTenant{"account_set_tenant", "SELECT set_config('app.tenant_id', $1, true)"};
// The user's address is still $2 (its index) / $3 (its text, for a row from before sealing).
#define HSEA_USER_HAS_EMAIL "(email_index = $2 OR (email_index IS NULL AND lower(email) = $3))"
#define HSEA_USER_HAS_EMAIL_3 "(email_index = $3 OR (email_index IS NULL AND lower(email) = $4))"
HSEA_QUERY kMarkVerified{"account_mark_verified",
                         "UPDATE users SET email_verified = true, updated_at = now() "
                         "WHERE id = $1 AND " HSEA_USER_HAS_EMAIL " RETURNING id"};
// A reset proves the owner of the address (still the account's): it also verifies it.
HSEA_QUERY kResetPassword{
    "account_reset_password",
    "UPDATE users SET password_hash = $2, email_verified = true, updated_at = now() "
    "WHERE id = $1 AND " HSEA_USER_HAS_EMAIL_3 " RETURNING email, name"};
HSEA_QUERY kChangePassword{"account_change_password",
                           "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1"};
HSEA_QUERY kChangeEmail{
    "account_change_email",
    "UPDATE users SET email = $2, email_index = $3, email_verified = true, updated_at = now() "
    "WHERE id = $1 "
    "RETURNING id, email, name, email_verified, mfa_enabled, created_at, updated_at"};
// Every session of the user but $2 (NULL: all); their refresh tokens expire with them.
HSEA_QUERY kRevokeSessions{
    "account_revoke_sessions",
    "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL "
    "AND ($2::uuid IS NULL OR id <> $2::uuid)"};
HSEA_QUERY kExpireRefresh{
    "account_expire_refresh_tokens",
    "UPDATE refresh_tokens SET expires_at = least(expires_at, now()) WHERE user_id = $1 "
    "AND spent_at IS NULL AND ($2::uuid IS NULL OR session_id <> $2::uuid)"};
HSEA_QUERY kPruneTokens{"account_prune_tokens", "SELECT account_tokens_prune() AS pruned"};

// Verification resends and e-mail changes per user, reset requests per address (one-hour
// windows, in process like the sign-up limit; a key that is not an address counts as given).
SignupThrottle* g_mails = nullptr;

void admit_mail(const std::string& key) {
  if (auto wait = g_mails->admit(key, settings().account_mails_per_hour)) {
    throw ApiError(ErrorCode::kRateLimited, "Too many e-mails asked for; try again later.")
        .retry_after(*wait);
  }
}

std::string link(std::string_view page, const std::string& token) {
  std::string base = config().public_url;
  while (base.ends_with('/')) base.pop_back();
  return base + "/" + std::string(page) + "?token=" + token;
}

std::string page_link(std::string_view page) {
  std::string base = config().public_url;
  while (base.ends_with('/')) base.pop_back();
  return base + "/" + std::string(page);
}

void check_password_policy(const std::string& password, std::string_view field) {
  if (std::string weak = password_weakness(password); !weak.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "The password is too weak.",
                   {{"/" + std::string(field), weak}});
  }
}

// A new token for `purpose`, stored hashed in `tx` (whose scope names the user); returns it.
awaitable<std::string> new_token(db::Transaction& tx, std::string user_id, std::string purpose,
                                 std::string email, int minutes) {
  std::string token = core::random_hex(32);
  // The address is the user's personal data: sealed under their key, like users.email.
  security::pii::Owner owner = security::pii::user_owner(user_id);
  std::string sealed = co_await security::pii::seal(tx, owner, "account_tokens.email", email);
  co_await tx.exec(kInsertToken,
                   db::params(core::sha256_hex(token), user_id, purpose, sealed, minutes));
  co_return token;
}

// The user's one tenant, whose branding their mail carries; "" (a platform mail) when they are
// in several tenants or none.
awaitable<std::string> home_tenant(std::string user_id) {
  db::Result tenants = co_await db::pool().query(kUserTenants, db::params(user_id));
  co_return tenants.rows() == 1 ? tenants.text(0, "tenant_id") : std::string();
}

// One audit entry in each tenant of the user, in `tx`; afterwards app.tenant_id is `restore`
// again (the transaction's own tenant, or "").
awaitable<void> audit_everywhere(db::Transaction& tx, security::Actor actor,
                                 security::Origin origin, std::string user_id,
                                 security::AuditEvent event, std::string restore) {
  db::Result tenants = co_await tx.exec(kUserTenants, db::params(user_id));
  for (int i = 0; i < tenants.rows(); ++i) {
    std::string tenant_id = tenants.text(i, "tenant_id");
    co_await tx.exec(kSetTenant, db::params(tenant_id));
    co_await security::record(tx, tenant_id, actor, origin, event);
  }
  if (tenants.rows() > 0) co_await tx.exec(kSetTenant, db::params(restore));
}

security::Actor user_actor(const std::string& user_id) {
  return security::Actor{.kind = security::Actor::Kind::kUser, .id = user_id};
}

struct Found {
  std::string user_id;
  std::string email;  // the token's address
};

// Refusals change nothing; each is audited in the tenants of the token's user (in their own
// transactions: there is no change to share one with), or logged when the token leads to none.
awaitable<void> audit_refusal(const RequestContext& ctx, std::string user_id, std::string purpose,
                              std::string reason) {
  log::info("account token refused", {{"request_id", ctx.request_id},
                                      {"purpose", purpose},
                                      {"reason", reason},
                                      {"user", user_id}});
  if (user_id.empty()) co_return;
  db::Result tenants = co_await db::pool().query(kUserTenants, db::params(user_id));
  std::string metadata = boost::json::serialize(object{{"purpose", purpose}, {"reason", reason}});
  for (int i = 0; i < tenants.rows(); ++i) {
    security::AuditEvent event = security::event("auth.token_refused", "user", user_id, metadata);
    co_await security::record_in(tenants.text(i, "tenant_id"), ctx, std::move(event));
  }
}

// The token's address and the account's address now, both sealed under the user's key (one
// key look-up), the latter lower-cased as tokens' are.
struct TokenAddresses {
  std::string email;
  std::string current_email;
};
awaitable<TokenAddresses> token_addresses(const db::Result& token) {
  std::vector<std::string> sealed{std::string(token.get(0, "email")),
                                  std::string(token.get(0, "current_email"))};
  co_await security::pii::load_keys(db::pool(), sealed);
  TokenAddresses out{security::pii::open("account_tokens.email", sealed[0]).value_or(""),
                     security::pii::open("users.email", sealed[1]).value_or("")};
  std::ranges::transform(out.current_email, out.current_email.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  co_return out;
}

ApiError token_error(std::string_view reason) {
  if (reason == "expired") {
    return ApiError(ErrorCode::kTokenExpired, "The link has expired; ask for a new one.");
  }
  return ApiError(ErrorCode::kTokenInvalid, "The link is not valid or was already used.");
}

// The token's user and address, or a refusal (audited): unknown, used, expired, for another
// purpose, for another account than `only_user` (when given), or for an address the account
// no longer has (verification, reset).
awaitable<Found> find_token(const RequestContext& ctx, std::string token, std::string purpose,
                            std::string only_user) {
  // Tokens are 64 hex digits; anything else is forged and never looked up.
  static const std::regex kHex("^[0-9a-f]{64}$");
  std::string reason, user_id;
  Found found;
  if (!std::regex_match(token, kHex)) {
    reason = "malformed";
  } else {
    db::Result r = co_await db::pool().query(kFindToken, db::params(core::sha256_hex(token)));
    if (r.empty()) {
      reason = "unknown";
    } else {
      user_id = r.text(0, "user_id");
      TokenAddresses addresses = co_await token_addresses(r);
      found = Found{user_id, addresses.email};
      if (r.get(0, "purpose") != purpose) {
        reason = "wrong_purpose";
      } else if (!only_user.empty() && user_id != only_user) {
        reason = "other_account";
      } else if (r.get_bool(0, "used")) {
        reason = "used";
      } else if (r.get_bool(0, "expired")) {
        reason = "expired";
      } else if (purpose != kChange && addresses.current_email != addresses.email) {
        reason = "address_changed";
      }
    }
  }
  if (!reason.empty()) {
    co_await audit_refusal(ctx, user_id, purpose, reason);
    throw token_error(reason);
  }
  co_return found;
}

// The user the request is signed in as (API keys never reach these routes: their Access lists
// no scopes).
const std::string& signed_in_user(const RequestContext& ctx) {
  if (ctx.principal.kind != http::Principal::Kind::kUser) {
    throw ApiError(ErrorCode::kForbidden, "Only a signed-in user can do this.");
  }
  return ctx.principal.user_id;
}

// The password of a signed-in user, checked like a sign-in (throttled, failures counted).
awaitable<void> check_current_password(const RequestContext& ctx, const db::Result& user,
                                       std::string password, std::string field) {
  const std::string& user_id = ctx.principal.user_id;
  LoginThrottle& throttle = *state().throttle;
  const std::string throttle_key = "user:" + user_id;
  co_await throttle.refuse_if_blocked(throttle_key, ctx.request.remote_ip,
                                      "Too many wrong passwords; try again later.");
  std::string hash =
      user.is_null(0, user.column("password_hash")) ? std::string() : user.text(0, "password_hash");
  auto verify_work = [hash, password] { return !hash.empty() && verify_password(hash, password); };
  if (!co_await runtime::cpu_pool().run(std::move(verify_work))) {
    co_await throttle.record_failure(throttle_key, ctx.request.remote_ip);
    if (!ctx.tenant_id.empty()) {
      co_await security::record_in(ctx.tenant_id, ctx,
                                   security::event("auth.password_check_failed", "user", user_id));
    }
    throw ApiError(ErrorCode::kValidationFailed, "The password is wrong.",
                   {{"/" + field, "is not the account's password"}});
  }
}

awaitable<std::string> hash_new_password(std::string password) {
  auto hash_work = [password] { return hash_password(password); };
  co_return co_await runtime::cpu_pool().run(std::move(hash_work));
}

awaitable<void> send_password_changed(db::Transaction& tx, std::string user_id, std::string email,
                                      std::string name, std::string how, bool platform) {
  std::string data = boost::json::serialize(
      object{{"how", how}, {"link", page_link("reset-password")}, {"button", "Reset my password"}});
  mail::Message notice = mail::message("password_changed", email, name, data);
  notice.platform = platform;
  notice.user_id = std::move(user_id);
  co_await mail::send(tx, std::move(notice));
}

// ------------------------------------------------------------------------ verification

awaitable<Response> verify_email(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string token = http::required_string(body, "token");
  Found found = co_await find_token(ctx, token, kVerify, std::string());
  bool spent = false, verified = false;
  {
    // Released before a refusal is audited (on other connections).
    db::Transaction tx = co_await db::pool().begin(db::user_scope(found.user_id));
    db::Result used = co_await tx.exec(kSpendToken, db::params(core::sha256_hex(token), kVerify));
    spent = !used.empty();
    if (spent) {
      db::Result user = co_await tx.exec(
          kMarkVerified, db::params(found.user_id, email_index(found.email), found.email));
      verified = !user.empty();
    }
    if (verified) {
      co_await audit_everywhere(tx, user_actor(found.user_id), security::origin_of(ctx),
                                found.user_id,
                                security::event("user.email_verified", "user", found.user_id), "");
      co_await tx.commit();
    }
  }
  if (!verified) {
    // Another use won the race, or the address changed in between: nothing was written.
    co_await audit_refusal(ctx, found.user_id, kVerify, spent ? "address_changed" : "used");
    throw token_error("used");
  }
  co_return http::json_response(200, object{{"email", found.email}, {"email_verified", true}});
}

awaitable<Response> resend_verification(RequestContext& ctx) {
  std::string user_id = signed_in_user(ctx);
  admit_mail("verify:" + user_id);
  db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
  db::Result user = co_await tx.exec(kUser, db::params(user_id));
  if (user.empty()) throw ApiError(ErrorCode::kNotFound, "The account no longer exists.");
  if (user.get_bool(0, "email_verified")) {
    throw ApiError(ErrorCode::kConflict, "The e-mail address is already verified.");
  }
  UserText text = (co_await open_users(user, &tx)).at(0);
  co_await send_email_verification(tx, user_id, text.email, text.name, ctx.tenant_id.empty());
  if (!ctx.tenant_id.empty()) {
    co_await security::record(tx, ctx,
                              security::event("user.email_verification_sent", "user", user_id));
  }
  co_await tx.commit();
  co_return http::json_response(202, object{{"status", "sent"}});
}

// ----------------------------------------------------------------------- password reset

// Answers the same, with the same work, whether or not the address has an account: the look-up
// and the mail happen in a platform job (identity.password_reset), enqueued either way.
awaitable<Response> forgot_password(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string email = normalized_email(body, "email");
  admit_mail("reset:" + email);
  security::Origin origin = security::origin_of(ctx);
  // The address and the client are personal data with no owner yet (the job finds the
  // account): sealed under a key derived from HSEA_SECRET_KEY, like TOTP secrets, so
  // jobs.payload holds none of it in plain text (HSEA-047).
  std::string request = boost::json::serialize(
      object{{"email", email}, {"ip", origin.ip}, {"user_agent", origin.user_agent}});
  std::string payload = boost::json::serialize(
      object{{"request", seal_text(request, config().secret_key, kResetRequestContext)},
             {"request_id", origin.request_id}});
  jobs::NewJob job = jobs::job("identity.password_reset", std::move(payload));
  std::string platform;  // a platform job: the account, if any, is found by the job
  co_await jobs::enqueue(std::move(platform), std::move(job));
  co_return http::json_response(
      202, object{{"status", "accepted"},
                  {"detail", "If an account uses this address, a reset link is on its way."}});
}

std::string payload_string(const jobs::JobContext& job, std::string_view key) {
  const auto* v = job.payload().if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}

awaitable<void> password_reset_job(jobs::JobContext& job) {
  // A request queued before 0022 carries its fields in plain text.
  std::string email = payload_string(job, "email"), ip = payload_string(job, "ip"),
              user_agent = payload_string(job, "user_agent");
  if (std::string sealed = payload_string(job, "request"); !sealed.empty()) {
    std::optional<std::string> request =
        unseal_text(sealed, config().secret_key, kResetRequestContext);
    if (!request) {
      // Sealed under another secret (HSEA_SECRET_KEY changed since): the user asks again.
      log::warn("password reset request does not open under HSEA_SECRET_KEY; dropped",
                {{"job", job.id()}});
      co_return;
    }
    boost::system::error_code ec;
    boost::json::value fields = boost::json::parse(*request, ec);
    if (ec || !fields.is_object()) co_return;
    auto field = [&](std::string_view key) {
      const auto* v = fields.as_object().if_contains(key);
      return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
    };
    email = field("email");
    ip = field("ip");
    user_agent = field("user_agent");
  }
  if (email.empty()) co_return;
  db::Result found = co_await db::pool().query(kUserByEmail, db::params(email_index(email), email));
  if (found.empty()) co_return;  // no account: no mail, nothing to tell anyone
  std::string user_id = found.text(0, "id");
  std::string tenant_id = co_await home_tenant(user_id);
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  db::Result user = co_await tx.exec(kUser, db::params(user_id));
  if (user.empty()) co_return;
  UserText text = (co_await open_users(user, &tx)).at(0);
  std::string token =
      co_await new_token(tx, user_id, kReset, text.email, settings().password_reset_minutes);
  std::string data =
      boost::json::serialize(object{{"link", link("reset-password", token)},
                                    {"button", "Choose a new password"},
                                    {"expires_minutes", settings().password_reset_minutes}});
  mail::Message reset = mail::message("password_reset", text.email, text.name, data);
  reset.platform = tenant_id.empty();
  reset.user_id = user_id;
  co_await mail::send(tx, std::move(reset));
  security::Origin origin{ip, user_agent, payload_string(job, "request_id")};
  security::Actor actor{.kind = security::Actor::Kind::kAnonymous, .id = ""};
  co_await audit_everywhere(tx, actor, origin, user_id,
                            security::event("auth.password_reset_requested", "user", user_id),
                            tenant_id);
  co_await tx.commit();
}

awaitable<Response> reset_password(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::string token = http::required_string(body, "token");
  std::string password = http::required_string(body, "password");
  check_password_policy(password, "password");  // before the token: a weak one spends nothing
  Found found = co_await find_token(ctx, token, kReset, std::string());
  std::string hash = co_await hash_new_password(password);
  std::string tenant_id = co_await home_tenant(found.user_id);
  bool done = false;
  {
    db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, found.user_id));
    bool spent =
        !(co_await tx.exec(kSpendToken, db::params(core::sha256_hex(token), kReset))).empty();
    db::Result user;
    if (spent) {
      user = co_await tx.exec(
          kResetPassword, db::params(found.user_id, hash, email_index(found.email), found.email));
    }
    if (!user.empty()) {
      std::optional<std::string> none;
      co_await tx.exec(kSpendOthers, db::params(found.user_id, kReset));
      co_await tx.exec(kRevokeSessions, db::params(found.user_id, none));
      co_await tx.exec(kExpireRefresh, db::params(found.user_id, none));
      UserText text = (co_await open_users(user, &tx)).at(0);
      co_await send_password_changed(tx, found.user_id, text.email, text.name, "with a reset link",
                                     tenant_id.empty());
      security::AuditEvent event = security::event("auth.password_reset", "user", found.user_id);
      co_await audit_everywhere(tx, user_actor(found.user_id), security::origin_of(ctx),
                                found.user_id, event, tenant_id);
      co_await tx.commit();
      done = true;
    }
  }
  if (!done) {
    co_await audit_refusal(ctx, found.user_id, kReset, "used");
    throw token_error("used");
  }
  invalidate_auth_cache();  // every session ended: cached access ends at once
  co_return Response::no_content();
}

// ------------------------------------------------------------------- signed-in changes

awaitable<Response> change_password(RequestContext& ctx) {
  const std::string user_id = signed_in_user(ctx);
  const object& body = http::json_body(ctx);
  std::string current = http::required_string(body, "current_password");
  std::string fresh = http::required_string(body, "new_password");
  check_password_policy(fresh, "new_password");
  db::Result user =
      co_await db::pool().scoped_query(db::user_scope(user_id), kUser, db::params(user_id));
  if (user.empty()) throw ApiError(ErrorCode::kNotFound, "The account no longer exists.");
  co_await check_current_password(ctx, user, current, "current_password");
  std::string hash = co_await hash_new_password(fresh);
  std::string tenant_id = ctx.tenant_id;
  if (tenant_id.empty()) tenant_id = co_await home_tenant(user_id);
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  co_await tx.exec(kChangePassword, db::params(user_id, hash));
  // Every other session ends; this one stays.
  co_await tx.exec(kRevokeSessions, db::params(user_id, ctx.principal.session_id));
  co_await tx.exec(kExpireRefresh, db::params(user_id, ctx.principal.session_id));
  co_await tx.exec(kSpendOthers, db::params(user_id, kReset));
  UserText text = (co_await open_users(user, &tx)).at(0);
  co_await send_password_changed(tx, user_id, text.email, text.name, "from a signed-in session",
                                 tenant_id.empty());
  co_await audit_everywhere(tx, user_actor(user_id), security::origin_of(ctx), user_id,
                            security::event("user.password_changed", "user", user_id), tenant_id);
  co_await tx.commit();
  invalidate_auth_cache();
  co_return Response::no_content();
}

awaitable<Response> change_email(RequestContext& ctx) {
  const std::string user_id = signed_in_user(ctx);
  const object& body = http::json_body(ctx);
  std::string email = normalized_email(body, "email");
  std::string password = http::required_string(body, "password");
  db::Result user =
      co_await db::pool().scoped_query(db::user_scope(user_id), kUser, db::params(user_id));
  if (user.empty()) throw ApiError(ErrorCode::kNotFound, "The account no longer exists.");
  co_await check_current_password(ctx, user, password, "password");
  UserText text = (co_await open_users(user)).at(0);
  std::string old_email = text.email;
  std::string old_lower = old_email;
  std::ranges::transform(old_lower, old_lower.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (email == old_lower) {
    throw ApiError(ErrorCode::kValidationFailed, "That is already the account's address.",
                   {{"/email", "is the current address"}});
  }
  db::Result taken = co_await db::pool().query(kEmailTaken, db::params(email_index(email), email));
  if (taken.get_bool(0, "taken")) {
    throw ApiError(ErrorCode::kConflict, "Another account uses this e-mail address.");
  }
  admit_mail("change:" + user_id);
  std::string tenant_id = ctx.tenant_id;
  if (tenant_id.empty()) tenant_id = co_await home_tenant(user_id);
  db::Transaction tx = co_await db::pool().begin(db::scope(tenant_id, user_id));
  co_await tx.exec(kSpendOthers, db::params(user_id, kChange));  // only the newest link works
  int hours = settings().email_change_hours;
  std::string token = co_await new_token(tx, user_id, kChange, email, hours * 60);
  std::string name = text.name;
  std::string confirm_data = boost::json::serialize(object{{"old_email", old_email},
                                                           {"link", link("confirm-email", token)},
                                                           {"button", "Confirm my new address"},
                                                           {"expires_hours", hours}});
  mail::Message confirm = mail::message("email_change", email, name, confirm_data);
  confirm.platform = tenant_id.empty();
  confirm.user_id = user_id;
  co_await mail::send(tx, std::move(confirm));
  std::string notice_data = boost::json::serialize(object{{"new_email", email},
                                                          {"link", page_link("reset-password")},
                                                          {"button", "Secure my account"}});
  mail::Message notice = mail::message("email_change_notice", old_email, name, notice_data);
  notice.platform = tenant_id.empty();
  notice.user_id = user_id;
  co_await mail::send(tx, std::move(notice));
  // No address in the audit log (HSEA-047): it outlives the account, and the account's
  // deletion must not leave its addresses behind. The target names the user.
  co_await audit_everywhere(tx, user_actor(user_id), security::origin_of(ctx), user_id,
                            security::event("user.email_change_requested", "user", user_id),
                            tenant_id);
  co_await tx.commit();
  co_return http::json_response(202, object{{"status", "sent"}});
}

awaitable<Response> confirm_email(RequestContext& ctx) {
  const std::string user_id = signed_in_user(ctx);
  const object& body = http::json_body(ctx);
  std::string token = http::required_string(body, "token");
  Found found = co_await find_token(ctx, token, kChange, user_id);
  db::Result user;
  bool taken = false;
  {
    db::Transaction tx = co_await db::pool().begin(db::scope(ctx.tenant_id, user_id));
    db::Result before = co_await tx.exec(kUser, db::params(user_id));
    bool spent =
        !(co_await tx.exec(kSpendToken, db::params(core::sha256_hex(token), kChange))).empty();
    if (spent && !before.empty()) {
      try {
        security::pii::Owner owner = security::pii::user_owner(user_id);
        std::string sealed = co_await security::pii::seal(tx, owner, "users.email", found.email);
        user =
            co_await tx.exec(kChangeEmail, db::params(user_id, sealed, email_index(found.email)));
      } catch (const db::Error& e) {
        if (e.sqlstate() != "23505") throw;
        taken = true;  // the transaction is rolled back: the token stays unused
      }
    }
    if (!user.empty()) {
      // No addresses in the audit log, as for the request (HSEA-047).
      co_await audit_everywhere(tx, user_actor(user_id), security::origin_of(ctx), user_id,
                                security::event("user.email_changed", "user", user_id),
                                ctx.tenant_id);
      co_await tx.commit();
    }
  }
  if (taken) {
    co_await audit_refusal(ctx, user_id, kChange, "address_taken");
    throw ApiError(ErrorCode::kConflict, "Another account uses this e-mail address by now.");
  }
  if (user.empty()) {
    co_await audit_refusal(ctx, user_id, kChange, "used");
    throw token_error("used");
  }
  UserText text = (co_await open_users(user)).at(0);
  object out{{"id", user.get(0, "id")},
             {"email", text.email},
             {"name", text.name},
             {"email_verified", user.get_bool(0, "email_verified")},
             {"mfa_enabled", user.get_bool(0, "mfa_enabled")},
             {"created_at", user.time(0, "created_at")},
             {"updated_at", user.time(0, "updated_at")}};
  co_return http::json_response(200, out);
}

awaitable<void> prune_tokens() {
  db::Result r = co_await db::pool().query(kPruneTokens);
  if (r.get_int(0, "pruned") > 0) {
    log::info("expired account tokens pruned", {{"tokens", r.get_int(0, "pruned")}});
  }
}

}  // namespace

awaitable<void> send_email_verification(db::Transaction& tx, std::string user_id, std::string email,
                                        std::string name, bool platform) {
  int hours = settings().email_verification_hours;
  std::string token = co_await new_token(tx, user_id, kVerify, email, hours * 60);
  std::string data = boost::json::serialize(object{{"link", link("verify-email", token)},
                                                   {"button", "Confirm my address"},
                                                   {"expires_hours", hours}});
  mail::Message m = mail::message("email_verification", email, name, data);
  m.platform = platform;
  m.user_id = std::move(user_id);
  co_await mail::send(tx, std::move(m));
}

void register_account_routes(runtime::Registrar& reg) {
  using http::Method;
  using http::Policies;
  // Unmetered: signing in and the signed-in user stay reachable past a quota.
  using metering::Unmetered;
  using security::Body;
  g_mails = &reg.process(std::make_unique<SignupThrottle>());
  jobs::define(reg, {.kind = "identity.password_reset", .run = password_reset_job});
  // Signed-in users (sessions, JWTs); API keys are refused (no scopes listed).
  const Access user{.authenticated = true};
  reg.route({.method = Method::kPost,
             .path = "/api/auth/verify-email",
             .handler = verify_email,
             .policies = Policies(Body{"TokenRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/verify-email/resend",
             .handler = resend_verification,
             .policies = Policies(user, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/password/forgot",
             .handler = forgot_password,
             .policies = Policies(Body{"ForgotPasswordRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/auth/password/reset",
             .handler = reset_password,
             .policies = Policies(Body{"ResetPasswordRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/me/password",
             .handler = change_password,
             .policies = Policies(user, Body{"ChangePasswordRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/me/email",
             .handler = change_email,
             .policies = Policies(user, Body{"ChangeEmailRequest"}, Unmetered{})});
  reg.route({.method = Method::kPost,
             .path = "/api/me/email/confirm",
             .handler = confirm_email,
             .policies = Policies(user, Body{"TokenRequest"}, Unmetered{})});
  reg.periodic({.name = "account-token-prune",
                .interval = std::chrono::hours(24),
                .once_per_cluster = true,
                .run = []() -> awaitable<void> { return prune_tokens(); }});
}

}  // namespace hsea::identity
