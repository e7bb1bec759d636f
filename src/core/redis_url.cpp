// The Redis URL format HSEA_REDIS_URL accepts; parsed here so configuration can check it
// without depending on the Redis client.
#include "core/redis_url.hpp"

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string_view>

namespace hsea::core {
namespace {

// ---- URL parsing ----------------------------------------------------------------------------

int parse_number(std::string_view text, int min, int max, const char* what) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value < min ||
      value > max) {
    throw std::invalid_argument(std::string("redis URL: bad ") + what);
  }
  return value;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    if (i + 2 >= text.size()) {
      throw std::invalid_argument("redis URL: bad percent escape in password");
    }
    int hi = hex_value(text[i + 1]);
    int lo = hex_value(text[i + 2]);
    if (hi < 0 || lo < 0) throw std::invalid_argument("redis URL: bad percent escape in password");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool valid_host(std::string_view host, bool bracketed) {
  if (host.empty()) return false;
  return std::all_of(host.begin(), host.end(), [bracketed](char c) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (bracketed) return alnum || c == ':' || c == '.' || c == '%';
    return alnum || c == '.' || c == '-' || c == '_';
  });
}

}  // namespace

RedisUrl parse_redis_url(const std::string& text) {
  constexpr std::string_view kScheme = "redis://";
  std::string_view rest = text;
  if (!rest.starts_with(kScheme)) throw std::invalid_argument("redis URL must start with redis://");
  rest.remove_prefix(kScheme.size());
  if (rest.find_first_of("?# ") != std::string_view::npos) {
    throw std::invalid_argument("redis URL: query, fragment or space not supported");
  }

  RedisUrl url;
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    std::string_view path = rest.substr(slash + 1);
    if (!path.empty()) url.db = parse_number(path, 0, 1 << 20, "database number");
  }

  std::size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    std::size_t colon = userinfo.find(':');
    if (colon == std::string_view::npos) {
      throw std::invalid_argument("redis URL: credentials must be written :password@");
    }
    std::string_view user = userinfo.substr(0, colon);
    if (!user.empty() && user != "default") {
      throw std::invalid_argument("redis URL: user names other than 'default' not supported");
    }
    url.password = percent_decode(userinfo.substr(colon + 1));
    if (url.password.empty()) throw std::invalid_argument("redis URL: empty password");
  }

  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (authority.starts_with('[')) {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) throw std::invalid_argument("redis URL: unclosed [");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') throw std::invalid_argument("redis URL: bad host");
      port = after.substr(1);
      has_port = true;
    }
    if (!valid_host(host, true)) throw std::invalid_argument("redis URL: bad host");
  } else {
    std::size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      has_port = true;
    }
    if (!valid_host(host, false)) throw std::invalid_argument("redis URL: bad host");
  }
  url.host = std::string(host);
  if (has_port) url.port = parse_number(port, 1, 65535, "port");
  return url;
}

}  // namespace hsea::core
