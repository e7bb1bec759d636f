#pragma once
// The web UI's session cookie: HttpOnly, SameSite=Lax, Secure when HSEA_PUBLIC_URL is https.
// Its value names the user, session and tenant and is MACed with HSEA_SECRET_KEY; the session
// row decides whether it is still live. Unsafe requests must echo the CSRF token, a MAC of the
// session id that the page reads from the non-HttpOnly hsea_csrf cookie.
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
};

std::optional<SessionCookie> read_session_cookie(const http::RequestContext& ctx);
std::string csrf_token(const std::string& secret_key, const std::string& session_id);
// Adds the Set-Cookie headers for a new session (or, with an empty cookie, clears them).
void set_session_cookies(http::Response& response, const core::Config& config,
                         const std::optional<SessionCookie>& cookie, int max_age_seconds);

}  // namespace hsea::identity
