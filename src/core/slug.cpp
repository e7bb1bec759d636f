#include "core/slug.hpp"

#include <algorithm>

namespace hsea::core {

bool is_reserved_slug(std::string_view slug) {
  static constexpr std::string_view kReserved[]{
      "about",        "abuse",    "account", "accounts",  "admin",      "administrator",
      "api",          "app",      "apps",    "assets",    "auth",       "autoconfig",
      "autodiscover", "beta",     "billing", "blog",      "cdn",        "console",
      "dashboard",    "demo",     "dev",     "docs",      "email",      "files",
      "ftp",          "git",      "graphql", "health",    "help",       "hostmaster",
      "hsea",         "id",       "imap",    "internal",  "localhost",  "login",
      "logout",       "mail",     "media",   "metrics",   "mx",         "no-reply",
      "noreply",      "ns",       "ns1",     "ns2",       "ns3",        "ns4",
      "oauth",        "pop",      "pop3",    "portal",    "postmaster", "root",
      "security",     "signin",   "signup",  "smtp",      "sso",        "staging",
      "static",       "status",   "support", "system",    "tenant",     "tenants",
      "test",         "webhooks", "webmail", "webmaster", "wpad",       "ws",
      "www",          "www1",     "www2",    "www3",
  };
  static_assert(std::ranges::is_sorted(kReserved), "keep kReserved sorted: it is binary-searched");
  return std::ranges::binary_search(kReserved, slug);
}

}  // namespace hsea::core
