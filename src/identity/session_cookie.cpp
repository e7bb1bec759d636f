#include "identity/session_cookie.hpp"

#include <fmt/format.h>

#include <charconv>
#include <ctime>

#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/ids.hpp"
#include "identity/module.hpp"
#include "identity/tokens.hpp"

namespace hsea::identity {
namespace {

constexpr std::string_view kSessionCookie = "hsea_session";
constexpr std::string_view kCsrfCookie = "hsea_csrf";

std::string mac(const std::string& secret, std::string_view purpose, std::string_view data) {
  return base64url_encode(core::hmac_sha256(secret, fmt::format("{}|{}", purpose, data)));
}

std::string_view cookie_value(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    auto semi = header.find(';');
    std::string_view pair = header.substr(0, semi);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    if (pair.starts_with(name) && pair.size() > name.size() && pair[name.size()] == '=') {
      return pair.substr(name.size() + 1);
    }
    if (semi == std::string_view::npos) break;
    header.remove_prefix(semi + 1);
  }
  return {};
}

}  // namespace

std::optional<SessionCookie> read_session_cookie(const http::RequestContext& ctx) {
  std::string_view value = cookie_value(ctx.request.header("cookie"), kSessionCookie);
  if (value.empty()) return std::nullopt;
  // <user>.<session>.<tenant or "-">.<issued at>.<mac>, or without <issued at> (set before it
  // existed: read as issued long ago, so the page refreshes it).
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = value.find('.', start);
    parts.push_back(value.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (parts.size() != 4 && parts.size() != 5) return std::nullopt;
  std::string signed_part(value.substr(0, value.size() - parts.back().size() - 1));
  if (!core::constant_time_equal(parts.back(), mac(config().secret_key, "session", signed_part))) {
    return std::nullopt;
  }
  SessionCookie c{std::string(parts[0]), std::string(parts[1]),
                  parts[2] == "-" ? std::string() : std::string(parts[2])};
  if (!core::is_uuid(c.user_id) || !core::is_uuid(c.session_id)) return std::nullopt;
  if (parts.size() == 5) {
    auto [end, ec] =
        std::from_chars(parts[3].data(), parts[3].data() + parts[3].size(), c.issued_at);
    if (ec != std::errc() || end != parts[3].data() + parts[3].size()) return std::nullopt;
  }
  return c;
}

std::string csrf_token(const std::string& secret_key, const std::string& session_id,
                       std::int64_t generation) {
  return mac(secret_key, "csrf", fmt::format("{}|{}", session_id, generation));
}

void set_csrf_cookie(http::Response& response, const core::Config& config, const std::string& token,
                     int max_age_seconds) {
  response.headers.push_back(
      {"set-cookie", fmt::format("{}={}; Path=/; Max-Age={}; SameSite=Lax{}", kCsrfCookie, token,
                                 max_age_seconds, config.public_url_is_https() ? "; Secure" : "")});
}

void set_session_cookies(http::Response& response, const core::Config& config,
                         const std::optional<SessionCookie>& cookie, int max_age_seconds,
                         std::int64_t csrf_generation) {
  std::string secure = config.public_url_is_https() ? "; Secure" : "";
  if (!cookie) {
    for (auto name : {kCsrfCookie, kSessionCookie}) {
      response.headers.push_back(
          {"set-cookie", fmt::format("{}=; Path=/; Max-Age=0; SameSite=Lax{}", name, secure)});
    }
    return;
  }
  std::string signed_part =
      fmt::format("{}.{}.{}.{}", cookie->user_id, cookie->session_id,
                  cookie->tenant_id.empty() ? "-" : cookie->tenant_id, std::time(nullptr));
  // The session cookie goes last: if a layer keeps only one Set-Cookie, it must be this one
  // (the page also gets the CSRF token in the response body).
  set_csrf_cookie(response, config,
                  csrf_token(config.secret_key, cookie->session_id, csrf_generation),
                  max_age_seconds);
  response.headers.push_back(
      {"set-cookie",
       fmt::format("{}={}.{}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}", kSessionCookie,
                   signed_part, mac(config.secret_key, "session", signed_part), max_age_seconds,
                   secure)});
}

}  // namespace hsea::identity
