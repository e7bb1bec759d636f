#pragma once
// Every setting is an HSEA_* environment variable with a safe local default (12-factor).
// load_config() validates all of them; a bad value is reported naming the variable.
#include <cstdint>
#include <expected>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace hsea::core {

struct Config {
  std::string env = "development";  // development | test | production
  std::string http_host = "127.0.0.1";
  std::uint16_t http_port = 8080;
  int threads = 0;          // 0 until loaded: then the number of cores
  int max_connections = 0;  // 0 until loaded: then derived from the open-file limit
  std::size_t max_body_bytes = 1 << 20;
  int read_timeout_seconds = 30;
  int idle_timeout_seconds = 60;
  int request_timeout_seconds = 30;
  int shutdown_grace_seconds = 10;
  std::string public_url = "http://127.0.0.1:8080";
  std::string database_url;
  std::string database_admin_url;
  int db_pool_size = 4;
  int db_acquire_timeout_ms = 2000;
  int db_connect_timeout_ms = 3000;
  int db_statement_timeout_ms = 5000;
  std::string redis_url;
  int redis_timeout_ms = 1000;
  std::string secret_key;
  std::string metrics_token;  // production: the bearer token /metrics and /status require
  std::string log_level = "info";
  bool access_log = true;
  bool trust_forwarded_for = false;  // behind a proxy that appends the client to X-Forwarded-For
  std::string base_domain;           // tenants are reachable at <slug>.<base_domain> when set
  int blocking_threads = 0;          // 0 until loaded: then half the cores, at least 1
  int login_failures_per_account = 100;
  int login_failures_per_ip = 1000;
  int signups_per_ip_per_hour = 20;  // 0: unlimited
  int refresh_token_days = 30;
  int api_key_rotation_grace_seconds = 86400;
  int tenant_deletion_grace_days = 30;
  int audit_retention_days = 365;
  int usage_flush_seconds = 10;

  bool development() const { return env == "development"; }
  bool production() const { return env == "production"; }
  bool public_url_is_https() const { return public_url.starts_with("https://"); }
};

struct Setting {
  std::string_view name;
  std::string_view default_value;
  bool secret;
  std::string_view help;
};

// The documented settings, in the order README lists them.
std::span<const Setting> settings();

using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup process_env();

// The HSEA_MAX_CONNECTIONS default for an open-file limit (RLIMIT_NOFILE soft): what is left
// after 64 descriptors for the process and threads × (pool size + 2) for PostgreSQL, Redis and
// the acceptors, at most 10000 and at least 16.
int default_max_connections(std::uint64_t open_file_limit, int threads, int db_pool_size);

// 127.0.0.0/8, ::1, ::ffff:127.x.y.z or "localhost": an address only this machine reaches.
bool is_loopback_address(std::string_view host);

// Returns the configuration or a message naming the first bad variable. Commands that use no
// secret (migrate, audit prune) pass require_secret = false. Without HSEA_SECRET_KEY the others
// are refused unless HSEA_ENV=development is set explicitly and HSEA_HTTP_HOST is loopback; then
// `hsea` uses the public development secret.
std::expected<Config, std::string> load_config(const EnvLookup& lookup, bool require_secret = true);

// One line per setting, secrets and URL passwords masked: printed by `hsea serve` at start.
std::string describe(const Config& config);

// "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db".
std::string mask_url_password(std::string_view url);

}  // namespace hsea::core
