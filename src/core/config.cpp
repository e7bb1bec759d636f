#include "core/config.hpp"

#include "core/redis_url.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <limits>
#include <thread>

namespace hsea::core {
namespace {

using Parse = std::optional<std::string> (*)(const std::string& value, Config& config);

struct Entry {
  Setting setting;
  Parse parse;
  std::string (*show)(const Config&);
};

template <typename T>
std::optional<T> parse_number(std::string_view text, T min, T max) {
  T value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  return std::nullopt;
}

#define HSEA_INT_SETTING(field, min, max)                                         \
  [](const std::string& v, Config& c) -> std::optional<std::string> {             \
    auto n = parse_number<long long>(v, min, max);                                \
    if (!n) return fmt::format("must be an integer from {} to {}", (min), (max)); \
    c.field = static_cast<decltype(c.field)>(*n);                                 \
    return std::nullopt;                                                          \
  },                                                                              \
      [](const Config& c) { return fmt::format("{}", c.field); }

#define HSEA_STRING_SETTING(field)                                    \
  [](const std::string& v, Config& c) -> std::optional<std::string> { \
    c.field = v;                                                      \
    return std::nullopt;                                              \
  },                                                                  \
      [](const Config& c) { return c.field; }

std::optional<std::string> check_postgres_url(std::string_view v) {
  if (!v.starts_with("postgresql://") && !v.starts_with("postgres://")) {
    return std::string("must be a postgresql:// URL");
  }
  return std::nullopt;
}

const std::array kEntries{
    Entry{{"HSEA_ENV", "development", false,
           "development, test or production; only an explicit development on a loopback "
           "HSEA_HTTP_HOST may run without HSEA_SECRET_KEY (on a public development secret)"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (v != "development" && v != "test" && v != "production") {
              return "must be development, test or production";
            }
            c.env = v;
            return std::nullopt;
          },
          [](const Config& c) { return c.env; }},
    Entry{{"HSEA_HTTP_HOST", "127.0.0.1", false, "address to listen on"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            in6_addr buf{};
            if (inet_pton(AF_INET, v.c_str(), &buf) != 1 &&
                inet_pton(AF_INET6, v.c_str(), &buf) != 1) {
              return "must be an IPv4 or IPv6 address";
            }
            c.http_host = v;
            return std::nullopt;
          },
          [](const Config& c) { return c.http_host; }},
    Entry{{"HSEA_HTTP_PORT", "8080", false, "TCP port to listen on (0 picks a free one)"},
          HSEA_INT_SETTING(http_port, 0, 65535)},
    Entry{{"HSEA_THREADS", "number of cores", false,
           "I/O threads, each with its own event loop, acceptor and connections"},
          HSEA_INT_SETTING(threads, 1, 256)},
    Entry{{"HSEA_MAX_CONNECTIONS",
           "open-file limit - 64 - threads x (pool size + 2), at most 10000, at least 16", false,
           "open HTTP connections; at the cap the server stops accepting until one closes"},
          HSEA_INT_SETTING(max_connections, 1, 10000000)},
    Entry{{"HSEA_MAX_BODY_BYTES", "1048576", false, "largest request body; larger gets 413"},
          HSEA_INT_SETTING(max_body_bytes, 1, 1LL << 32)},
    Entry{{"HSEA_READ_TIMEOUT_SECONDS", "30", false, "time a client has to send a whole request"},
          HSEA_INT_SETTING(read_timeout_seconds, 1, 3600)},
    Entry{{"HSEA_IDLE_TIMEOUT_SECONDS", "60", false, "keep-alive connection idle time"},
          HSEA_INT_SETTING(idle_timeout_seconds, 1, 3600)},
    Entry{{"HSEA_REQUEST_TIMEOUT_SECONDS", "30", false,
           "deadline for a handler; past it the request is cancelled with 504"},
          HSEA_INT_SETTING(request_timeout_seconds, 1, 3600)},
    Entry{{"HSEA_SHUTDOWN_GRACE_SECONDS", "10", false,
           "on SIGTERM/SIGINT, how long in-flight requests may finish"},
          HSEA_INT_SETTING(shutdown_grace_seconds, 0, 3600)},
    Entry{{"HSEA_PUBLIC_URL", "http://127.0.0.1:8080", false,
           "URL clients use; https enables HSTS and Secure cookies"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (!v.starts_with("http://") && !v.starts_with("https://")) {
              return "must be an http:// or https:// URL";
            }
            c.public_url = v;
            while (c.public_url.ends_with('/')) c.public_url.pop_back();
            return std::nullopt;
          },
          [](const Config& c) { return c.public_url; }},
    Entry{{"HSEA_DATABASE_URL", "postgresql://hsea_app:hsea_app@127.0.0.1:5432/hsea", true,
           "PostgreSQL URL of the application role (created by `hsea migrate`)"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (auto e = check_postgres_url(v)) return e;
            c.database_url = v;
            return std::nullopt;
          },
          [](const Config& c) { return mask_url_password(c.database_url); }},
    Entry{{"HSEA_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/hsea", true,
           "PostgreSQL URL of the owner role, used only by `hsea migrate`"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (auto e = check_postgres_url(v)) return e;
            c.database_admin_url = v;
            return std::nullopt;
          },
          [](const Config& c) { return mask_url_password(c.database_admin_url); }},
    Entry{{"HSEA_DB_POOL_SIZE", "4", false, "PostgreSQL connections per thread"},
          HSEA_INT_SETTING(db_pool_size, 1, 1000)},
    Entry{{"HSEA_DB_ACQUIRE_TIMEOUT_MS", "2000", false,
           "wait for a free connection before answering 503"},
          HSEA_INT_SETTING(db_acquire_timeout_ms, 1, 600000)},
    Entry{{"HSEA_DB_CONNECT_TIMEOUT_MS", "3000", false, "PostgreSQL connect deadline"},
          HSEA_INT_SETTING(db_connect_timeout_ms, 1, 600000)},
    Entry{{"HSEA_DB_STATEMENT_TIMEOUT_MS", "5000", false,
           "server-side statement_timeout of every connection"},
          HSEA_INT_SETTING(db_statement_timeout_ms, 1, 3600000)},
    Entry{{"HSEA_REDIS_URL", "(unset: in-process fallbacks)", true,
           "redis://[:password@]host:port[/db]"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (!v.empty()) {
              try {
                parse_redis_url(v);
              } catch (const std::exception& e) {
                return std::string("must be redis://[:password@]host[:port][/db]: ") + e.what();
              }
            }
            c.redis_url = v;
            return std::nullopt;
          },
          [](const Config& c) {
            return c.redis_url.empty() ? std::string("(unset)") : mask_url_password(c.redis_url);
          }},
    Entry{{"HSEA_REDIS_TIMEOUT_MS", "1000", false, "deadline of one Redis command"},
          HSEA_INT_SETTING(redis_timeout_ms, 1, 600000)},
    Entry{{"HSEA_SECRET_KEY", "(required; see HSEA_ENV)", true,
           "master secret, at least 32 bytes; scripts/run generates one into var/"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (v.size() < 32) return "must be at least 32 bytes";
            c.secret_key = v;
            return std::nullopt;
          },
          [](const Config& c) {
            return c.secret_key.empty() ? std::string("(unset)") : std::string("***");
          }},
    Entry{{"HSEA_METRICS_TOKEN", "(unset)", true,
           "production: /metrics and /status need Authorization: Bearer <token> (at least 16 "
           "bytes); unset, they answer 404 there"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            if (!v.empty() && v.size() < 16) return "must be at least 16 bytes";
            c.metrics_token = v;
            return std::nullopt;
          },
          [](const Config& c) {
            return c.metrics_token.empty() ? std::string("(unset)") : std::string("***");
          }},
    Entry{{"HSEA_LOG_LEVEL", "info", false, "trace, debug, info, warn, error"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            static constexpr std::array kLevels{"trace", "debug", "info", "warn", "error"};
            if (std::ranges::find(kLevels, v) == kLevels.end()) {
              return "must be trace, debug, info, warn or error";
            }
            c.log_level = v;
            return std::nullopt;
          },
          [](const Config& c) { return c.log_level; }},
    Entry{{"HSEA_ACCESS_LOG", "true", false, "one JSON line per request"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            auto b = parse_bool(v);
            if (!b) return "must be true or false";
            c.access_log = *b;
            return std::nullopt;
          },
          [](const Config& c) { return std::string(c.access_log ? "true" : "false"); }},
    Entry{{"HSEA_TRUST_FORWARDED_FOR", "false", false,
           "behind a reverse proxy: the client address is the last X-Forwarded-For entry"},
          [](const std::string& v, Config& c) -> std::optional<std::string> {
            auto b = parse_bool(v);
            if (!b) return "must be true or false";
            c.trust_forwarded_for = *b;
            return std::nullopt;
          },
          [](const Config& c) { return std::string(c.trust_forwarded_for ? "true" : "false"); }},
    Entry{{"HSEA_BASE_DOMAIN", "(unset)", false,
           "tenants are also reachable at <slug>.<base domain>, e.g. app.example.com"},
          HSEA_STRING_SETTING(base_domain)},
    Entry{{"HSEA_BLOCKING_THREADS", "half the cores (at least 1)", false,
           "threads for CPU-heavy work (password hashing) off the I/O threads"},
          HSEA_INT_SETTING(blocking_threads, 1, 256)},
    Entry{{"HSEA_LOGIN_MAX_FAILURES_PER_ACCOUNT", "100", false,
           "failed sign-ins per account per hour before 429"},
          HSEA_INT_SETTING(login_failures_per_account, 1, 1000000)},
    Entry{{"HSEA_LOGIN_MAX_FAILURES_PER_IP", "1000", false,
           "failed sign-ins per client IP per hour before 429"},
          HSEA_INT_SETTING(login_failures_per_ip, 1, 1000000)},
    Entry{{"HSEA_SIGNUPS_PER_IP_PER_HOUR", "20", false,
           "sign-ups per client address (IPv6: per /64) per hour before 429; 0 turns it off"},
          HSEA_INT_SETTING(signups_per_ip_per_hour, 0, 1000000)},
    Entry{{"HSEA_REFRESH_TOKEN_DAYS", "30", false, "refresh token and session lifetime"},
          HSEA_INT_SETTING(refresh_token_days, 1, 3650)},
    Entry{{"HSEA_API_KEY_ROTATION_GRACE_SECONDS", "86400", false,
           "how long a rotated API key keeps working"},
          HSEA_INT_SETTING(api_key_rotation_grace_seconds, 0, 31536000)},
    Entry{{"HSEA_TENANT_DELETION_GRACE_DAYS", "30", false,
           "a deleted tenant is suspended this long before its data is removed"},
          HSEA_INT_SETTING(tenant_deletion_grace_days, 0, 3650)},
    Entry{{"HSEA_AUDIT_RETENTION_DAYS", "365", false,
           "audit entries older than this are pruned (daily, and by `hsea audit prune`)"},
          HSEA_INT_SETTING(audit_retention_days, 1, 36500)},
    Entry{{"HSEA_USAGE_FLUSH_SECONDS", "10", false,
           "how often each thread adds its API-key request counts to the database"},
          HSEA_INT_SETTING(usage_flush_seconds, 1, 3600)},
};

#undef HSEA_INT_SETTING
#undef HSEA_STRING_SETTING

const std::array<Setting, kEntries.size()> kSettings = [] {
  std::array<Setting, kEntries.size()> out{};
  for (std::size_t i = 0; i < kEntries.size(); ++i) out[i] = kEntries[i].setting;
  return out;
}();

}  // namespace

std::span<const Setting> settings() { return kSettings; }

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::expected<Config, std::string> load_config(const EnvLookup& lookup, bool require_secret) {
  Config config;
  config.database_url = "postgresql://hsea_app:hsea_app@127.0.0.1:5432/hsea";
  config.database_admin_url = "postgresql://postgres@127.0.0.1:5432/hsea";
  for (const Entry& entry : kEntries) {
    auto value = lookup(entry.setting.name);
    if (!value) continue;
    if (auto error = entry.parse(*value, config)) {
      return std::unexpected(fmt::format("{}: {}", entry.setting.name, *error));
    }
  }
  if (config.blocking_threads == 0) {
    // Half the cores: Argon2id is memory-hard, and hashing on every core starves request
    // handling of memory bandwidth as much as of CPU (docs/perf.md, sign-in benchmark).
    config.blocking_threads =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
  }
  if (config.threads == 0) {
    config.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  if (config.max_connections == 0) {
    rlimit files{};
    std::uint64_t limit = 1024;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0) {
      limit = files.rlim_cur == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max()
                                              : static_cast<std::uint64_t>(files.rlim_cur);
    }
    config.max_connections = default_max_connections(limit, config.threads, config.db_pool_size);
  }
  // Without a secret, `hsea` falls back to a fixed development secret that anyone can read in
  // the source: only for a development server that was asked for as such (HSEA_ENV is not
  // just defaulted) and that nothing but this machine can reach.
  if (require_secret && config.secret_key.empty() &&
      !(lookup("HSEA_ENV") == "development" && is_loopback_address(config.http_host))) {
    return std::unexpected(std::string(
        "HSEA_SECRET_KEY: is required (at least 32 bytes); only HSEA_ENV=development set "
        "explicitly, on a loopback HSEA_HTTP_HOST, may run without it"));
  }
  return config;
}

bool is_loopback_address(std::string_view host) {
  std::string text(host);
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;  // ::ffff:127.x.y.z
  }
  return text == "localhost";
}

int default_max_connections(std::uint64_t open_file_limit, int threads, int db_pool_size) {
  std::uint64_t reserved = 64 + static_cast<std::uint64_t>(std::max(threads, 1)) *
                                    (static_cast<std::uint64_t>(std::max(db_pool_size, 0)) + 2);
  std::uint64_t left = open_file_limit > reserved ? open_file_limit - reserved : 0;
  return static_cast<int>(std::clamp<std::uint64_t>(left, 16, 10000));
}

std::string describe(const Config& config) {
  std::string out;
  for (const Entry& entry : kEntries) {
    out += fmt::format("  {}={}\n", entry.setting.name, entry.show(config));
  }
  return out;
}

std::string mask_url_password(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  auto authority_start = scheme + 3;
  auto at = url.find('@', authority_start);
  auto slash = url.find('/', authority_start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && at > slash)) {
    return std::string(url);
  }
  auto colon = url.find(':', authority_start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return fmt::format("{}***{}", url.substr(0, colon + 1), url.substr(at));
}

}  // namespace hsea::core
