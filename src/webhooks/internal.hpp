#pragma once
// The webhooks module's own pieces (internal): settings, state, delivery and routes.
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <string>

namespace hsea::runtime {
class Registrar;
}

namespace hsea::webhooks {

struct Settings {
  bool allow_private = false;          // HSEA_WEBHOOK_ALLOW_PRIVATE
  int secret_overlap_seconds = 86400;  // HSEA_WEBHOOK_SECRET_OVERLAP_SECONDS
  int disable_after_days = 5;          // HSEA_WEBHOOK_DISABLE_AFTER_DAYS
  int delivery_retention_days = 30;    // HSEA_WEBHOOK_DELIVERY_RETENTION_DAYS
};

// Deliveries by outcome, for /metrics.
struct Stats {
  std::atomic<std::uint64_t> delivered{0};       // a 2xx answer
  std::atomic<std::uint64_t> failed_attempt{0};  // a non-2xx answer or a network error, retried
  std::atomic<std::uint64_t> failed{0};          // the last attempt failed, or the endpoint is off
  std::atomic<std::uint64_t> refused{0};         // the address was refused (SSRF rules)
  std::atomic<std::uint64_t> endpoints_disabled{0};
};

struct State {
  Settings settings;
  bool production = false;
  std::string server_secret;  // HSEA_SECRET_KEY: seals the signing secrets
  Stats stats;
};
State& state();

// The result of one HTTP attempt.
struct Attempt {
  int status = 0;  // 0: no HTTP answer
  std::int64_t duration_ms = 0;
  std::string body;      // the first 1 KiB of the response, valid UTF-8
  std::string error;     // "" when an answer came
  bool refused = false;  // the SSRF rules refused the address
  bool ok() const { return error.empty() && status >= 200 && status < 300; }
};
struct Outgoing {
  std::string url;
  std::string body;
  std::string webhook_id;
  std::int64_t timestamp = 0;
  std::string signature;  // the webhook-signature header
};
// Blocking: runs on the I/O pool.
Attempt post(const Outgoing& request, bool require_https, bool allow_private);

// The body sent for an event: {"id", "type", "timestamp", "data"} (Standard Webhooks plus the
// event id); `data` is a JSON object's text.
std::string event_body(const std::string& id, const std::string& type, const std::string& timestamp,
                       const std::string& data);
std::string now_rfc3339();

void register_delivery(runtime::Registrar& registrar);
void register_routes(runtime::Registrar& registrar);

}  // namespace hsea::webhooks
