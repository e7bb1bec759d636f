#pragma once
// Every setting is an HSEA_* environment variable with a safe local default (12-factor). Core's
// are here; each module declares its own section (core/settings.hpp). A bad value is reported
// naming the variable.
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

#include "core/settings.hpp"

namespace hsea::core {

struct Config {
  std::string env = "development";  // development | test | production
  std::string http_host = "127.0.0.1";
  std::uint16_t http_port = 8080;
  int threads = 0;          // 0 until loaded: then the number of cores
  int max_connections = 0;  // 0 until derived (app::configure: it depends on the db pool size)
  std::size_t max_body_bytes = 1 << 20;
  int read_timeout_seconds = 30;
  int idle_timeout_seconds = 60;
  int request_timeout_seconds = 30;
  int shutdown_grace_seconds = 10;
  std::string public_url = "http://127.0.0.1:8080";
  std::string secret_key;
  std::string log_level = "info";
  bool access_log = true;
  bool trust_forwarded_for = false;  // behind a proxy that appends the client to X-Forwarded-For
  int blocking_threads = 0;          // 0 until loaded: then half the cores, at least 1

  bool development() const { return env == "development"; }
  bool production() const { return env == "production"; }
  bool public_url_is_https() const { return public_url.starts_with("https://"); }
};

// Core's own section: what the process and the HTTP server need before any module exists.
// Every other setting is in the section of the module that reads it (reg.settings(...)).
const Section<Config>& config_section();

// The HSEA_MAX_CONNECTIONS default for an open-file limit (RLIMIT_NOFILE soft): what is left
// after 64 descriptors for the process and threads × (pool size + 2) for PostgreSQL, Redis and
// the acceptors, at most 10000 and at least 16.
int default_max_connections(std::uint64_t open_file_limit, int threads, int db_pool_size);
// This process's RLIMIT_NOFILE soft limit (1024 when it cannot be read).
std::uint64_t open_file_limit();

// 127.0.0.0/8, ::1, ::ffff:127.x.y.z or "localhost": an address only this machine reaches.
bool is_loopback_address(std::string_view host);

// Returns core's configuration or a message naming the first bad variable. Commands that use no
// secret (migrate, audit prune) pass require_secret = false. Without HSEA_SECRET_KEY the others
// are refused unless HSEA_ENV=development is set explicitly and HSEA_HTTP_HOST is loopback; then
// `hsea` uses the public development secret. max_connections stays 0 unless set.
std::expected<Config, std::string> load_config(const EnvLookup& lookup, bool require_secret = true);

// One line per core setting, secrets masked (`hsea serve` prints every section's).
std::string describe(const Config& config);

}  // namespace hsea::core
