#pragma once
// The web UI's session cookie: HttpOnly, SameSite=Lax, Secure when HSEA_PUBLIC_URL is https.
// Its value names the user, session and tenant and is MACed with HSEA_SECRET_KEY; the session
// row decides whether it is still live. Unsafe requests must echo the CSRF token, a MAC of the
// session id and its csrf_generation that the page reads from the non-HttpOnly hsea_csrf cookie
// (or the csrf_token of the sign-in or refresh answer). Refreshing the session bumps the
// generation, so earlier tokens stop working.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "http/context.hpp"

namespace hsea::core {
struct Config;
}

namespace hsea::identity {

struct SessionCookie {
  std::string user_id;
  std::string session_id;
  std::string tenant_id;
  // When the cookie was set (sign-in or refresh), Unix seconds; 0 for a cookie from before this
  // field. It grants access for HSEA_ACCESS_TOKEN_SECONDS, then only POST /api/auth/refresh.
  std::int64_t issued_at = 0;
};

std::optional<SessionCookie> read_session_cookie(const http::RequestContext& ctx);
std::string csrf_token(const std::string& secret_key, const std::string& session_id,
                       std::int64_t generation);
// Adds the Set-Cookie headers for a new or refreshed session, issued now (or, with an empty
// cookie, clears them).
void set_session_cookies(http::Response& response, const core::Config& config,
                         const std::optional<SessionCookie>& cookie, int max_age_seconds,
                         std::int64_t csrf_generation = 0);
// Only the hsea_csrf cookie (a refreshed token for the same session).
void set_csrf_cookie(http::Response& response, const core::Config& config, const std::string& token,
                     int max_age_seconds);
}  // namespace hsea::identity
