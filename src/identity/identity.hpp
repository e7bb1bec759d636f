#pragma once
// Identity: sign-up, sign-in, tokens, sessions, the caller's profile, API keys; and the
// middleware that resolves the tenant and authenticates each request.
#include <boost/asio/awaitable.hpp>

#include "http/middleware.hpp"

namespace hsea::app {
struct App;
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

}  // namespace hsea::identity
