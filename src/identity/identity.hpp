#pragma once
// Identity: sign-up, sign-in, tokens, sessions, the caller's profile, API keys; and the
// middleware that resolves the tenant and authenticates each request.
#include <boost/asio/awaitable.hpp>

#include <string>

#include "http/middleware.hpp"

namespace hsea::app {
struct App;
}
namespace hsea::db {
class Pool;
}

namespace hsea::identity {

void Register(app::App& app);         // /api/auth/*, /.well-known/jwks.json, /api/me*
void RegisterApiKeys(app::App& app);  // /api/api-keys*

// HSEA-007: the tenant a request asks for, from X-Tenant-Id or the subdomain of
// HSEA_BASE_DOMAIN. Authentication later checks the caller belongs to it.
boost::asio::awaitable<http::Response> resolve_tenant(http::RequestContext& ctx, http::Next next);
// Bearer JWT, Bearer API key, or the session cookie (with CSRF check on unsafe methods); sets
// ctx.principal and, when no tenant was asked for, the credential's own tenant.
boost::asio::awaitable<http::Response> authenticate(http::RequestContext& ctx, http::Next next);
// Enforces the route's Needs: authentication, tenant, roles, API-key scopes.
boost::asio::awaitable<http::Response> authorize(http::RequestContext& ctx, http::Next next);

// Per-key usage (HSEA-048): each I/O thread counts the requests of each API key and adds them
// to api_keys.request_count every HSEA_USAGE_FLUSH_SECONDS (the last interval is lost on a
// crash: counts are approximate by that much).
void count_api_key_use(const std::string& tenant_id, const std::string& key_id);
boost::asio::awaitable<void> flush_api_key_usage_forever(db::Pool& db, int interval_seconds);

}  // namespace hsea::identity
