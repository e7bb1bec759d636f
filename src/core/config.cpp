#include "core/config.hpp"

#include <arpa/inet.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <limits>
#include <thread>

namespace hsea::core {
namespace {

std::optional<std::string> check_env(std::string& v) {
  if (v != "development" && v != "test" && v != "production") {
    return "must be development, test or production";
  }
  return std::nullopt;
}

std::optional<std::string> check_ip_address(std::string& v) {
  in6_addr buf{};
  if (inet_pton(AF_INET, v.c_str(), &buf) != 1 && inet_pton(AF_INET6, v.c_str(), &buf) != 1) {
    return "must be an IPv4 or IPv6 address";
  }
  return std::nullopt;
}

std::optional<std::string> check_public_url(std::string& v) {
  if (!v.starts_with("http://") && !v.starts_with("https://")) {
    return "must be an http:// or https:// URL";
  }
  while (v.ends_with('/')) v.pop_back();
  return std::nullopt;
}

std::optional<std::string> check_secret_key(std::string& v) {
  if (v.size() < 32) return "must be at least 32 bytes";
  return std::nullopt;
}

std::optional<std::string> check_log_level(std::string& v) {
  static constexpr std::array kLevels{"trace", "debug", "info", "warn", "error"};
  if (std::ranges::find(kLevels, v) == kLevels.end()) {
    return "must be trace, debug, info, warn or error";
  }
  return std::nullopt;
}

}  // namespace

const Section<Config>& config_section() {
  using C = Config;
  static const Section<Config> kSection{
      "core",
      {string_setting(&C::env, "HSEA_ENV", "development",
                      "development, test or production; only an explicit development on a "
                      "loopback HSEA_HTTP_HOST may run without HSEA_SECRET_KEY (on a public "
                      "development secret)",
                      check_env),
       string_setting(&C::http_host, "HSEA_HTTP_HOST", "127.0.0.1", "address to listen on",
                      check_ip_address),
       int_setting(&C::http_port, "HSEA_HTTP_PORT", "8080", 0, 65535,
                   "TCP port to listen on (0 picks a free one)"),
       int_setting(&C::threads, "HSEA_THREADS", "number of cores", 1, 256,
                   "I/O threads, each with its own event loop, acceptor and connections"),
       int_setting(&C::max_connections, "HSEA_MAX_CONNECTIONS",
                   "open-file limit - 64 - threads x (pool size + 2), at most 10000, at least 16",
                   1, 10000000,
                   "open HTTP connections; at the cap the server stops accepting until one "
                   "closes"),
       int_setting(&C::max_body_bytes, "HSEA_MAX_BODY_BYTES", "1048576", 1, 1LL << 32,
                   "largest request body; larger gets 413"),
       int_setting(&C::read_timeout_seconds, "HSEA_READ_TIMEOUT_SECONDS", "30", 1, 3600,
                   "time a client has to send a whole request"),
       int_setting(&C::idle_timeout_seconds, "HSEA_IDLE_TIMEOUT_SECONDS", "60", 1, 3600,
                   "keep-alive connection idle time"),
       int_setting(&C::request_timeout_seconds, "HSEA_REQUEST_TIMEOUT_SECONDS", "30", 1, 3600,
                   "deadline for a handler; past it the request is cancelled with 504"),
       int_setting(&C::shutdown_grace_seconds, "HSEA_SHUTDOWN_GRACE_SECONDS", "10", 0, 3600,
                   "on SIGTERM/SIGINT, how long in-flight requests may finish"),
       string_setting(&C::public_url, "HSEA_PUBLIC_URL", "http://127.0.0.1:8080",
                      "URL clients use; https enables HSTS and Secure cookies", check_public_url),
       string_setting(&C::secret_key, "HSEA_SECRET_KEY", "(required; see HSEA_ENV)",
                      "master secret, at least 32 bytes; scripts/run generates one into var/",
                      check_secret_key, Show::kSecret),
       string_setting(&C::log_level, "HSEA_LOG_LEVEL", "info", "trace, debug, info, warn, error",
                      check_log_level),
       bool_setting(&C::access_log, "HSEA_ACCESS_LOG", "true", "one JSON line per request"),
       bool_setting(&C::trust_forwarded_for, "HSEA_TRUST_FORWARDED_FOR", "false",
                    "behind a reverse proxy: the client address is the last X-Forwarded-For "
                    "entry"),
       int_setting(&C::blocking_threads, "HSEA_BLOCKING_THREADS", "half the cores (at least 1)", 1,
                   256, "threads for CPU-heavy work (password hashing) off the I/O threads")}};
  return kSection;
}

std::expected<Config, std::string> load_config(const EnvLookup& lookup, bool require_secret) {
  auto loaded = load_section(config_section(), lookup);
  if (!loaded) return std::unexpected(loaded.error());
  Config config = std::move(*loaded);
  if (config.blocking_threads == 0) {
    // Half the cores: Argon2id is memory-hard, and hashing on every core starves request
    // handling of memory bandwidth as much as of CPU (docs/perf.md, sign-in benchmark).
    config.blocking_threads =
        static_cast<int>(std::max(1u, std::thread::hardware_concurrency() / 2));
  }
  if (config.threads == 0) {
    config.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
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

std::uint64_t open_file_limit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) != 0) return 1024;
  return files.rlim_cur == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max()
                                         : static_cast<std::uint64_t>(files.rlim_cur);
}

int default_max_connections(std::uint64_t open_file_limit, int threads, int db_pool_size) {
  std::uint64_t reserved = 64 + static_cast<std::uint64_t>(std::max(threads, 1)) *
                                    (static_cast<std::uint64_t>(std::max(db_pool_size, 0)) + 2);
  std::uint64_t left = open_file_limit > reserved ? open_file_limit - reserved : 0;
  return static_cast<int>(std::clamp<std::uint64_t>(left, 16, 10000));
}

std::string describe(const Config& config) { return describe(config_section(), config); }

}  // namespace hsea::core
