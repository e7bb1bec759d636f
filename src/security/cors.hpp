#pragma once
// CORS with per-tenant allowed origins (HSEA-043). The step runs at the edge (after the security
// headers, before body limits and tenant resolution) for requests that carry Origin:
// - the tenant is the one the Host names (identity's tenant-resolution rule, handed over by the
//   tenancy module at registration: set_cors_host_slug); X-Tenant-Id cannot count, a preflight
//   does not carry header values;
// - its allowed origins come from a per-thread cache (kCorsCacheTtl; emptied in every thread of
//   this process when a tenant's origins change), so a CORS check costs no query on the hot
//   path; a miss costs one (cors_tenant_origins, also for a slug that names no tenant);
// - a preflight from a listed origin gets 204 with the route's methods; from any other origin a
//   403 origin_not_allowed problem; an actual request from a listed origin gets
//   Access-Control-Allow-Origin/-Credentials, Vary: Origin and the exposed headers, from any
//   other origin no CORS header at all. Refusals are audited (security/refusals.hpp).
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "http/middleware.hpp"

namespace hsea::security {

constexpr auto kCorsCacheTtl = std::chrono::seconds(10);
constexpr int kMaxAllowedOrigins = 50;

// The tenant slug a Host names ("" for none). The tenancy module sets identity's.
using HostSlug = std::string (*)(std::string_view host);
void set_cors_host_slug(HostSlug host_slug);

// An allowed origin in its normal form: "scheme://host[:port]", lower case, scheme http or
// https, host a DNS name, IPv4 address or bracketed IPv6 address, port 1-65535 and left out
// when it is the scheme's default (browsers send it so). No path (not even "/"), query,
// fragment, user info or wildcard. Returns false with `reason` set when `text` is none.
bool normalize_origin(std::string_view text, std::string& normal, std::string& reason);

// After a tenant's allowed origins changed: every thread's cache is emptied before its next use.
// Other nodes see the change within kCorsCacheTtl.
void invalidate_cors_cache();
// Fills this thread's cache (what a database look-up does; unit tests prime it directly).
void remember_cors_origins(const std::string& slug, std::string tenant_id,
                           std::vector<std::string> origins);

// The middleware (registered by the security module).
boost::asio::awaitable<http::Response> cors(http::RequestContext& ctx, http::Next next);
bool has_origin(const http::RequestContext& ctx);

}  // namespace hsea::security
