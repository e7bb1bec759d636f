// Tenant resolution, authentication and authorization middleware.
#include <algorithm>
#include <chrono>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "identity/auth_cache.hpp"
#include "identity/identity.hpp"
#include "identity/module.hpp"
#include "identity/session_cookie.hpp"
#include "identity/tokens.hpp"
#include "runtime/registrar.hpp"
#include "security/refusals.hpp"

namespace hsea::identity {
namespace {

using boost::asio::awaitable;
using core::ApiError;
using core::ErrorCode;
using http::Principal;
using http::RequestContext;
using http::Response;

HSEA_QUERY kTenantBySlug{"auth_tenant_by_slug", "SELECT auth_tenant_by_slug($1) AS id"};
HSEA_QUERY kApiKey{"auth_api_key", "SELECT * FROM auth_api_key($1)"};
HSEA_QUERY kTouchApiKey{"auth_touch_api_key",
                        "UPDATE api_keys SET last_used_at = now() WHERE id = $1"};
// One round trip per request: is the session live, what is the caller's role in the tenant,
// is the tenant active; last_seen_at is refreshed at most once a minute.
HSEA_QUERY kSessionAndRole{
    "auth_session_and_role",
    "WITH touched AS (UPDATE sessions SET last_seen_at = now() "
    "  WHERE id = $1 AND last_seen_at < now() - interval '60 seconds') "
    "SELECT s.revoked_at IS NULL AND s.expires_at > now() AS active, "
    "       (SELECT role FROM memberships m WHERE m.user_id = s.user_id) AS role, "
    "       (SELECT status FROM tenants) AS tenant_status, "
    "       s.mfa_at IS NULL AND COALESCE((SELECT require_mfa FROM tenants), false) "
    "         AS mfa_missing, s.csrf_generation, "
    "       EXISTS (SELECT 1 FROM platform_staff st WHERE st.user_id = s.user_id) AS staff "
    "  FROM sessions s WHERE s.id = $1"};

ApiError unauthorized(std::string detail) {
  return ApiError(ErrorCode::kUnauthorized, std::move(detail));
}

// A Host header as a name to compare: the port dropped, lower-case, without trailing dots
// ("ACME.Example.COM.:8443" -> "acme.example.com"). An IPv6 literal keeps its brackets.
std::string normalized_host(std::string_view host) {
  if (host.starts_with('[')) {
    if (auto close = host.find(']'); close != std::string_view::npos)
      host = host.substr(0, close + 1);
  } else {
    host = host.substr(0, host.find(':'));
  }
  std::string out(host);
  std::ranges::transform(out, out.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// Whether Host is a name under the base domain ("x.example.com" under "example.com"; the base
// domain itself is not). Such a Host names a tenant, or names none and is refused: it never
// falls back to the credential's own tenant.
bool under_base_domain(std::string_view host, std::string_view base) {
  std::string b = normalized_host(base);
  if (b.empty()) return false;
  std::string h = normalized_host(host);
  return h.size() > b.size() && h.ends_with(b) && h[h.size() - b.size() - 1] == '.';
}

// The subdomain label of Host under the base domain ("acme" for ACME.example.com.:443), or ""
// when Host is not under it. The label may be no valid slug ("a.b", "x_y"): see is_slug.
std::string subdomain(std::string_view host, std::string_view base) {
  if (!under_base_domain(host, base)) return {};
  std::string h = normalized_host(host);
  return h.substr(0, h.size() - normalized_host(base).size() - 1);
}

// The tenants.slug rule: lower-case letters, digits and inner hyphens, 1-63 characters.
bool is_slug(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  return std::ranges::all_of(
      s, [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// The tenant id that a Host under the base domain stands for when it names no tenant: the nil
// UUID, which no tenant has (ids are UUIDv7). Authentication then treats the request like one
// for a tenant the caller does not belong to, so an unknown address and another tenant's
// address answer alike (401 without a credential, 404 with one).
constexpr std::string_view kNoTenantAtThisAddress = "00000000-0000-0000-0000-000000000000";

// Whether the request's tenant came from the Host (not from X-Tenant-Id or the credential). A
// caller who does not belong to it gets the same 404 as for an address without a tenant.
bool tenant_from_host(const RequestContext& ctx) {
  return ctx.request.header("x-tenant-id").empty() &&
         under_base_domain(ctx.request.header("host"), settings().base_domain);
}

ApiError no_tenant_at_this_address() {
  return ApiError(ErrorCode::kNotFound, "No tenant at this address.");
}

void act_as_api_key(RequestContext& ctx, const CachedApiKey& key) {
  if (!ctx.tenant_id.empty() && ctx.tenant_id != key.tenant_id) {
    if (tenant_from_host(ctx)) throw no_tenant_at_this_address();
    throw ApiError(ErrorCode::kForbidden, "An API key acts only for its own tenant.");
  }
  ctx.tenant_id = key.tenant_id;
  ctx.principal.kind = Principal::Kind::kApiKey;
  ctx.principal.api_key_id = key.key_id;
  ctx.principal.scopes = key.scopes;
  count_api_key_use(key.tenant_id, key.key_id);
}

awaitable<void> authenticate_api_key(RequestContext& ctx, std::string_view key) {
  // hsea_<12 hex prefix>_<secret>
  auto second = key.find('_', 5);
  if (second != 17) throw unauthorized("The API key is not valid.");
  std::string key_hash = core::sha256_hex(key);
  AuthCache& cache = AuthCache::for_this_thread();
  if (auto known = cache.api_key(key_hash)) {
    act_as_api_key(ctx, *known);
    co_return;
  }
  db::Result r = co_await db::pool().query(kApiKey, db::params(key.substr(5, 12)));
  if (r.empty() || !core::constant_time_equal(r.get(0, "secret_hash"), key_hash)) {
    throw unauthorized("The API key is not valid.");
  }
  if (!r.get_bool(0, "usable")) throw unauthorized("The API key is revoked or expired.");
  CachedApiKey found{r.text(0, "tenant_id"), r.text(0, "id"), {}};
  if (!ctx.tenant_id.empty() && ctx.tenant_id != found.tenant_id) {
    if (tenant_from_host(ctx)) throw no_tenant_at_this_address();
    throw ApiError(ErrorCode::kForbidden, "An API key acts only for its own tenant.");
  }
  if (r.get(0, "tenant_status") != "active") {
    throw ApiError(ErrorCode::kForbidden, "The tenant is suspended.");
  }
  found.scopes = r.words(0, "scopes");
  auto ttl = std::chrono::milliseconds::max();
  if (auto left = r.optional(0, "seconds_left")) {
    ttl = std::chrono::milliseconds(static_cast<std::int64_t>(std::stod(*left) * 1000));
  }
  cache.put_api_key(key_hash, found, ttl);
  act_as_api_key(ctx, found);
  if (r.get_bool(0, "stale_last_used")) {
    co_await db::pool().tenant_query(found.tenant_id, kTouchApiKey, db::params(found.key_id));
  }
}

// The session's state from the database, remembered in this thread's cache.
awaitable<CachedSession> load_session(std::string tenant_id, std::string user_id,
                                      std::string session_id) {
  db::Result r = co_await db::pool().scoped_query(db::scope(tenant_id, user_id), kSessionAndRole,
                                                  db::params(session_id));
  if (r.empty() || !r.get_bool(0, "active")) throw unauthorized("The session has ended.");
  CachedSession known{r.optional(0, "role").value_or(""),
                      r.optional(0, "tenant_status").value_or(""), r.get_bool(0, "mfa_missing"),
                      r.get_int(0, "csrf_generation"), r.get_bool(0, "staff")};
  // Only admissions are remembered: someone just added to a tenant gets in at once.
  if (!known.role.empty() || tenant_id.empty()) {
    AuthCache::for_this_thread().put_session(user_id, session_id, tenant_id, known);
  }
  co_return known;
}

bool csrf_matches(const RequestContext& ctx, const std::string& session_id,
                  std::int64_t generation) {
  std::string_view sent = ctx.request.header("x-csrf-token");
  return !sent.empty() &&
         core::constant_time_equal(sent, csrf_token(config().secret_key, session_id, generation));
}

// A cookie request with an unsafe method whose X-CSRF-Token is missing, or not the session's
// current token: counted, audited (sampled) in the tenant when the user belongs to it, refused.
awaitable<void> refuse_csrf(const RequestContext& ctx, std::string user_id, std::string session_id,
                            CachedSession known) {
  bool missing = ctx.request.header("x-csrf-token").empty();
  security::RefusalEvent e{
      .kind = security::Refusal::kCsrf,
      .tenant_id = known.role.empty() ? std::string() : ctx.tenant_id,
      .action = "security.csrf_refused",
      .target_type = "session",
      .target_id = session_id,
      .actor_type = "user",
      .actor_id = user_id,
      .metadata = {{"reason", missing ? "missing" : "mismatch"},
                   {"method", http::method_name(ctx.request.method)},
                   {"path", log::valid_utf8(ctx.request.path, 512)},
                   {"origin", log::valid_utf8(ctx.request.header("origin"), 300)}}};
  co_await security::audit_refusal(ctx, std::move(e));
  throw ApiError(ErrorCode::kCsrfFailed,
                 missing ? "Send the session's CSRF token in X-CSRF-Token."
                         : "The X-CSRF-Token is not the session's current token; a refresh "
                           "(POST /api/auth/refresh) or sign-in replaces it.");
}

awaitable<void> authenticate_session(RequestContext& ctx, std::string user_id,
                                     std::string session_id, std::string token_tenant,
                                     bool check_csrf) {
  // A tenant the request named (header, subdomain) must admit the caller; the token's own
  // tenant is only a default, dropped when the caller no longer belongs there, so routes that
  // need no tenant (profile, tenant list, sign-out) keep working.
  bool named = !ctx.tenant_id.empty();
  if (!named) ctx.tenant_id = token_tenant;
  // The cache key binds the user too: the query admits a session only for its owner
  // (sessions are scoped by app.user_id), and a hit must mean the same.
  std::optional<CachedSession> known =
      AuthCache::for_this_thread().session(user_id, session_id, ctx.tenant_id);
  bool cached = known.has_value();
  if (!cached) known = co_await load_session(ctx.tenant_id, user_id, session_id);
  if (check_csrf && !csrf_matches(ctx, session_id, known->csrf_generation)) {
    // A refresh on another node (or thread, before its cache emptied) may have moved the
    // generation on: a cached mismatch is checked once against the database. Only failures
    // pay that query.
    if (cached) known = co_await load_session(ctx.tenant_id, user_id, session_id);
    if (!cached || !csrf_matches(ctx, session_id, known->csrf_generation)) {
      co_await refuse_csrf(ctx, user_id, session_id, *known);
    }
  }
  ctx.principal.kind = Principal::Kind::kUser;
  ctx.principal.user_id = std::move(user_id);
  ctx.principal.session_id = std::move(session_id);
  ctx.principal.staff = known->staff;
  if (ctx.tenant_id.empty()) co_return;
  bool usable =
      !known->role.empty() && (known->tenant_status == "active" || known->role == "owner");
  const Access* access = ctx.policy<Access>();
  // A route that needs no tenant (the profile, MFA enrolment) works without the token's default
  // tenant when that tenant would refuse the session.
  if ((!usable || known->mfa_missing) && !named && (access == nullptr || !access->tenant)) {
    ctx.tenant_id.clear();
    co_return;
  }
  if (known->role.empty()) {
    // Never reveal whether the tenant exists: by its address, another tenant looks like none.
    if (named && tenant_from_host(ctx)) throw no_tenant_at_this_address();
    throw ApiError(ErrorCode::kForbidden, "You are not a member of this tenant.");
  }
  ctx.principal.role = known->role;
  if (!usable) throw ApiError(ErrorCode::kForbidden, "The tenant is suspended.");
  if (known->mfa_missing) {
    throw ApiError(ErrorCode::kMfaRequired,
                   "This tenant requires multi-factor sign-in: turn MFA on (POST /api/me/mfa/totp) "
                   "and sign in with it.");
  }
}

}  // namespace

std::string tenant_slug_of_host(std::string_view host) {
  if (state().settings == nullptr) return {};
  std::string slug = subdomain(host, settings().base_domain);
  return is_slug(slug) ? slug : std::string();
}

bool names_tenant(const RequestContext& ctx) {
  const Access* access = ctx.policy<Access>();
  return access != nullptr && (access->authenticated || access->tenant);
}

bool needs_authentication(const RequestContext& ctx) {
  const Access* access = ctx.policy<Access>();
  return access != nullptr && (access->authenticated || access->credentials_if_sent);
}

awaitable<Response> resolve_tenant(RequestContext& ctx, http::Next next) {
  // Public routes (health, sign-up, JWKS) have no tenant context to resolve.
  const Access* access = ctx.policy<Access>();
  if (access == nullptr || (!access->authenticated && !access->tenant)) {
    co_return co_await next(ctx);
  }
  std::string_view header = ctx.request.header("x-tenant-id");
  if (!header.empty()) {
    if (!core::is_uuid(header)) {
      throw ApiError(ErrorCode::kBadRequest, "X-Tenant-Id must be a tenant id (a UUID).");
    }
    ctx.tenant_id = std::string(header);
    for (char& c : ctx.tenant_id)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  } else if (under_base_domain(ctx.request.header("host"), settings().base_domain)) {
    // The Host names a tenant, or none: never the credential's own (a DELETE /api/tenant at a
    // mistyped address must not suspend the caller's tenant). An unknown address is answered
    // by authentication like another tenant's (see kNoTenantAtThisAddress).
    std::string slug = tenant_slug_of_host(ctx.request.header("host"));
    ctx.tenant_id = std::string(kNoTenantAtThisAddress);
    if (!slug.empty()) {
      db::Result r = co_await db::pool().query(kTenantBySlug, db::params(slug));
      if (!r.empty() && !r.is_null(0, 0)) ctx.tenant_id = std::string(r.get(0, 0));
    }
  }
  co_return co_await next(ctx);
}

awaitable<Response> authenticate(RequestContext& ctx, http::Next next) {
  const Access* access = ctx.policy<Access>();
  if (access == nullptr || !(access->authenticated || access->credentials_if_sent)) {
    co_return co_await next(ctx);
  }
  std::string_view authorization = ctx.request.header("authorization");
  if (authorization.starts_with("Bearer ") || authorization.starts_with("bearer ")) {
    std::string_view credential = authorization.substr(7);
    if (credential.starts_with("hsea_")) {
      co_await authenticate_api_key(ctx, credential);
    } else {
      auto claims = state().keys.keys().verify(credential, unix_now());
      if (!claims && claims.error() == "unknown kid") {
        // Perhaps signed by a key rotated in on another node since this one loaded its keys.
        const core::Config* cfg = &config();
        const db::Settings* dbs = &database();
        auto reload = [cfg, dbs] {
          try {
            return state().keys.reload(dbs->database_url, cfg->secret_key, cfg->public_url);
          } catch (const std::exception&) {
            return false;
          }
        };
        if (co_await runtime::io_pool().run(std::move(reload))) {
          claims = state().keys.keys().verify(credential, unix_now());
        }
      }
      if (!claims) {
        log::debug("access token refused",
                   {{"request_id", ctx.request_id}, {"reason", claims.error()}});
        throw unauthorized("The access token is invalid or expired.");
      }
      co_await authenticate_session(ctx, claims->user_id, claims->session_id, claims->tenant_id,
                                    false);
    }
  } else if (auto cookie = read_session_cookie(ctx)) {
    // Like an access token, the cookie grants access for HSEA_ACCESS_TOKEN_SECONDS after sign-in
    // or its last refresh; then the page refreshes it (POST /api/auth/refresh, which also
    // rotates the CSRF token) and retries.
    if (unix_now() - cookie->issued_at > settings().access_token_seconds) {
      throw unauthorized("The session's access expired; refresh it (POST /api/auth/refresh).");
    }
    // Cookie sessions are for the web UI; unsafe methods must echo the session's current CSRF
    // token (bearer tokens and API keys are never sent by a browser on its own: exempt).
    ctx.principal.via_cookie = true;
    co_await authenticate_session(ctx, cookie->user_id, cookie->session_id, cookie->tenant_id,
                                  !http::is_safe_method(ctx.request.method));
  }
  co_return co_await next(ctx);
}

std::optional<Response> authorize(RequestContext& ctx) {
  static const Access kPublic;
  const Access* declared = ctx.policy<Access>();
  const Access& needs = declared != nullptr ? *declared : kPublic;
  const Principal& p = ctx.principal;
  if (needs.authenticated && !p.authenticated()) {
    throw unauthorized("Sign in, or send an access token or API key.");
  }
  if (needs.staff && !p.staff) {
    throw ApiError(ErrorCode::kForbidden, "Only platform staff may use this endpoint.");
  }
  if (needs.tenant && ctx.tenant_id.empty()) {
    throw ApiError(ErrorCode::kBadRequest,
                   "No tenant selected: send X-Tenant-Id or use the tenant's subdomain.");
  }
  if (p.kind == Principal::Kind::kApiKey) {
    auto has = [&](std::string_view scope) {
      return std::ranges::find(p.scopes, scope) != p.scopes.end();
    };
    if (needs.scopes.empty()) {
      throw ApiError(ErrorCode::kForbidden, "API keys cannot use this endpoint.");
    }
    bool general =
        http::is_safe_method(ctx.request.method) ? (has("read") || has("write")) : has("write");
    bool specific = std::ranges::any_of(needs.scopes, has);
    if (!general && !specific) {
      throw ApiError(ErrorCode::kForbidden, "The API key lacks the scope for this request.");
    }
  } else if (p.kind == Principal::Kind::kUser && !needs.roles.empty() &&
             std::ranges::find(needs.roles, p.role) == needs.roles.end()) {
    throw ApiError(ErrorCode::kForbidden, "Your role does not allow this.");
  }
  return std::nullopt;
}

}  // namespace hsea::identity
