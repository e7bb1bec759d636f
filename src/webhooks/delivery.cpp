// Fan-out and delivery: every committed event becomes one delivery per subscribed endpoint
// (webhooks.fan_out, in the event's transaction scope), and each delivery is POSTed by the job
// worker through libcurl on the I/O pool (webhooks.deliver), retried for about three days.
#include <curl/curl.h>
#include <sys/socket.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <ctime>

#include "core/log.hpp"
#include "db/db.hpp"
#include "jobs/jobs.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"
#include "security/audit.hpp"
#include "webhooks/internal.hpp"
#include "webhooks/webhooks.hpp"

namespace hsea::webhooks {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kKeptResponseBytes = 1024;
constexpr std::size_t kMaxResponseBytes = 1 << 20;  // read past this: the connection is dropped
constexpr long kTimeoutMs = 10000;

// One delivery per enabled endpoint of the event's tenant subscribed to its type that existed
// when the event happened (an endpoint added later does not get older events whose fan-out
// was still queued); a second run of the same fan-out inserts nothing.
HSEA_QUERY kFanOut{
    "webhook_fan_out",
    "INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, body) "
    "SELECT tenant_id, uuid_v7(), id, $1::uuid, $2, $3 FROM webhook_endpoints "
    "WHERE enabled AND (cardinality(event_types) = 0 OR $2 = ANY(event_types)) "
    "AND created_at <= (SELECT e.created_at FROM events e WHERE e.id = $1::uuid) "
    "ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING RETURNING id"};
HSEA_QUERY kLoad{
    "webhook_delivery_load",
    "SELECT d.id, d.event_id, d.body, d.status, e.id AS endpoint_id, e.url, e.enabled, "
    "e.secret_sealed, CASE WHEN e.previous_secret_expires_at > now() "
    "THEN e.previous_secret_sealed END AS previous_sealed "
    "FROM webhook_deliveries d JOIN webhook_endpoints e "
    "ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id WHERE d.id = $1"};
// The attempt in the log and the delivery's state, in one statement.
HSEA_QUERY kRecord{
    "webhook_attempt_record",
    "WITH d AS (UPDATE webhook_deliveries SET attempts = attempts + 1, status = $2, "
    "last_status_code = $3::int, last_error = $4, updated_at = now(), "
    "delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END "
    "WHERE id = $1 RETURNING tenant_id, id, endpoint_id, event_id, attempts) "
    "INSERT INTO webhook_attempts (tenant_id, id, delivery_id, endpoint_id, event_id, attempt, "
    "status_code, duration_ms, response_body, error) SELECT tenant_id, uuid_v7(), id, "
    "endpoint_id, event_id, attempts, $3::int, $5, $6, $4 FROM d RETURNING attempt"};
HSEA_QUERY kGiveUp{"webhook_delivery_give_up",
                   "UPDATE webhook_deliveries SET status = 'failed', last_error = $2, "
                   "updated_at = now() WHERE id = $1"};
HSEA_QUERY kEndpointOk{"webhook_endpoint_ok",
                       "UPDATE webhook_endpoints SET failing_since = NULL "
                       "WHERE id = $1 AND failing_since IS NOT NULL"};
HSEA_QUERY kEndpointFailing{
    "webhook_endpoint_failing",
    "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, now()) WHERE id = $1 "
    "RETURNING enabled AND failing_since < now() - make_interval(days => $2) AS disable"};
HSEA_QUERY kDisable{
    "webhook_endpoint_disable",
    "UPDATE webhook_endpoints SET enabled = false, disabled_at = now(), disabled_reason = $2, "
    "updated_at = now() WHERE id = $1 AND enabled RETURNING id, url, failing_since"};
HSEA_QUERY kPrune{"webhook_deliveries_prune", "SELECT webhook_deliveries_prune($1) AS n"};

// ------------------------------------------------------------------------------- libcurl

struct Transfer {
  bool allow_private = false;
  bool refused = false;
  std::string kept;
  std::size_t received = 0;
};

// Every connection libcurl opens is checked here, after its own resolution: a name that
// resolved to a public address when registered and to 127.0.0.1 now is refused now.
curl_socket_t open_socket(void* user, curlsocktype purpose, curl_sockaddr* address) {
  auto* t = static_cast<Transfer*>(user);
  if (purpose != CURLSOCKTYPE_IPCXN || (!t->allow_private && !is_public_address(&address->addr))) {
    t->refused = true;
    return CURL_SOCKET_BAD;
  }
  return ::socket(address->family, address->socktype, address->protocol);
}

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::size_t bytes = size * n;
  t->received += bytes;
  if (t->kept.size() < kKeptResponseBytes) {
    t->kept.append(data, std::min(bytes, kKeptResponseBytes - t->kept.size()));
  }
  return t->received > kMaxResponseBytes ? 0 : bytes;
}

}  // namespace

Attempt post(const Outgoing& out, bool require_https, bool allow_private) {
  Attempt a;
  auto started = Clock::now();
  auto finish = [&](std::string error) {
    a.error = std::move(error);
    a.duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    return a;
  };
  auto url = parse_endpoint_url(out.url, require_https);
  if (!url) {
    a.refused = true;
    return finish("refused: the URL " + url.error());
  }
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return finish("libcurl could not start a transfer");
  Transfer t;
  t.allow_private = allow_private;
  char errors[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  for (const std::string& h :
       {std::string("Content-Type: application/json"), "webhook-id: " + out.webhook_id,
        "webhook-timestamp: " + std::to_string(out.timestamp),
        "webhook-signature: " + out.signature, std::string("User-Agent: hsea-webhooks/1"),
        std::string("Expect:")}) {
    headers = curl_slist_append(headers, h.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_URL, out.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");  // never through a proxy from the environment
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, kTimeoutMs);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, out.body.data());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(out.body.size()));
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_socket);
  curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &t);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errors);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  a.status = static_cast<int>(status);
  a.body = log::valid_utf8(t.kept, kKeptResponseBytes);
  if (t.refused) {
    a.refused = true;
    a.status = 0;
    return finish(
        "refused: the host resolves to a loopback, private, link-local or reserved "
        "address");
  }
  // A response cut at the size limit still carries its status.
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && status > 0)) {
    a.status = 0;
    return finish(std::string(curl_easy_strerror(rc)) +
                  (errors[0] ? std::string(": ") + errors : ""));
  }
  return finish("");
}

std::string now_rfc3339() {
  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[40];
  std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms.count()));
  return buf;
}

std::string event_body(const std::string& id, const std::string& type, const std::string& timestamp,
                       const std::string& data) {
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(data, ec);
  if (ec || !parsed.is_object()) parsed = object{};
  object body{{"id", id}, {"type", type}, {"timestamp", timestamp}, {"data", std::move(parsed)}};
  return boost::json::serialize(body);
}

namespace {

awaitable<void> fan_out(jobs::JobContext& job) {
  std::optional<jobs::Event> event = co_await jobs::event_of(job);
  if (!event) co_return;  // pruned, or its tenant is gone
  std::string body = event_body(event->id, event->type, event->created_at, event->data);
  db::Transaction* tx = co_await job.transaction();
  db::Result r = co_await tx->exec(kFanOut, db::params(event->id, event->type, body));
  std::vector<std::string> payloads;
  for (int i = 0; i < r.rows(); ++i) {
    payloads.push_back(boost::json::serialize(object{{"delivery_id", r.text(i, "id")}}));
  }
  if (!payloads.empty()) {
    co_await jobs::enqueue_many(*tx, "webhooks.deliver", std::move(payloads));
  }
}

// The failure streak of the endpoint; past HSEA_WEBHOOK_DISABLE_AFTER_DAYS it is disabled (in
// the same transaction, audited, with a webhook_endpoint.disabled event for e-mail to tell the
// tenant's admins). Returns whether it was disabled.
awaitable<bool> note_failure(db::Transaction& tx, const jobs::JobContext& job,
                             const std::string& endpoint_id) {
  const State& s = state();
  db::Result f =
      co_await tx.exec(kEndpointFailing, db::params(endpoint_id, s.settings.disable_after_days));
  if (f.empty() || !f.get_bool(0, "disable")) co_return false;
  std::string reason =
      "every delivery failed for " + std::to_string(s.settings.disable_after_days) + " days";
  db::Result d = co_await tx.exec(kDisable, db::params(endpoint_id, reason));
  if (d.empty()) co_return false;
  security::Actor actor{security::Actor::Kind::kJob, job.id()};
  security::Origin origin{"", "", job.id()};
  std::string metadata = boost::json::serialize(object{{"reason", reason}});
  co_await security::record(
      tx, actor, origin,
      security::event("webhook_endpoint.disabled", "webhook_endpoint", endpoint_id, metadata));
  std::string data = boost::json::serialize(object{{"id", endpoint_id},
                                                   {"url", d.text(0, "url")},
                                                   {"reason", reason},
                                                   {"failing_since", d.time(0, "failing_since")}});
  co_await jobs::emit(tx, actor, job.id(), "webhook_endpoint.disabled", std::move(data));
  co_return true;
}

awaitable<void> deliver(jobs::JobContext& job) {
  const auto* id = job.payload().if_contains("delivery_id");
  if (id == nullptr || !id->is_string()) co_return;
  std::string delivery_id(id->as_string());
  State& s = state();
  // Read outside the job's transaction: no connection is held during the HTTP request.
  db::Result d = co_await db::pool().tenant_query(job.tenant_id(), kLoad, db::params(delivery_id));
  if (d.empty()) co_return;                           // its endpoint was deleted
  if (d.text(0, "status") == "delivered") co_return;  // a retry raced a success
  if (!d.get_bool(0, "enabled")) {
    db::Transaction* tx = co_await job.transaction();
    co_await tx->exec(kGiveUp, db::params(delivery_id, "the endpoint is disabled"));
    s.stats.failed.fetch_add(1, std::memory_order_relaxed);
    co_return;
  }
  std::string endpoint_id = d.text(0, "endpoint_id");
  std::vector<std::string> secrets{unseal_secret(d.get(0, "secret_sealed"), s.server_secret)};
  if (auto previous = d.optional(0, "previous_sealed")) {
    secrets.push_back(unseal_secret(*previous, s.server_secret));
  }
  Outgoing out;
  out.url = d.text(0, "url");
  out.body = d.text(0, "body");
  out.webhook_id = d.text(0, "event_id");
  out.timestamp = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  out.signature = signature_header(secrets, out.webhook_id, out.timestamp, out.body);
  auto send = [out, https = s.production, allow = s.settings.allow_private] {
    return post(out, https, allow);
  };
  Attempt a = co_await runtime::io_pool().run(std::move(send));
  std::optional<int> code;
  if (a.status > 0) code = a.status;
  std::optional<std::string> error;
  if (!a.ok())
    error = a.error.empty() ? "the endpoint answered " + std::to_string(a.status) : a.error;
  if (a.ok()) {
    // Commits with the job's completion.
    db::Transaction* tx = co_await job.transaction();
    co_await tx->exec(kRecord,
                      db::params(delivery_id, "delivered", code, error, a.duration_ms, a.body));
    co_await tx->exec(kEndpointOk, db::params(endpoint_id));
    s.stats.delivered.fetch_add(1, std::memory_order_relaxed);
    co_return;
  }
  // A failed attempt's job writes roll back, so its record has a transaction of its own.
  if (a.refused) s.stats.refused.fetch_add(1, std::memory_order_relaxed);
  bool last = job.attempt() >= kMaxAttempts;
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(job.tenant_id()));
  co_await tx.exec(kRecord, db::params(delivery_id, last ? "failed" : "retrying", code, error,
                                       a.duration_ms, a.body));
  bool disabled = co_await note_failure(tx, job, endpoint_id);
  if (disabled) co_await tx.exec(kGiveUp, db::params(delivery_id, *error));
  co_await tx.commit();
  if (disabled) {
    s.stats.endpoints_disabled.fetch_add(1, std::memory_order_relaxed);
    s.stats.failed.fetch_add(1, std::memory_order_relaxed);
    log::warn("webhook endpoint disabled after failing continuously",
              {{"tenant_id", job.tenant_id()}, {"endpoint_id", endpoint_id}});
    co_return;  // no more retries: the endpoint is off
  }
  (last ? s.stats.failed : s.stats.failed_attempt).fetch_add(1, std::memory_order_relaxed);
  throw std::runtime_error("webhook delivery failed: " + *error);
}

awaitable<void> prune() {
  db::Result r =
      co_await db::pool().query(kPrune, db::params(state().settings.delivery_retention_days));
  if (r.get_int(0, "n") > 0)
    log::info("old webhook deliveries pruned", {{"deliveries", r.get_int(0, "n")}});
}

}  // namespace

void register_delivery(runtime::Registrar& reg) {
  jobs::define(reg, {.kind = "webhooks.fan_out", .run = fan_out, .priority = 10});
  jobs::define(reg, {.kind = "webhooks.deliver",
                     .run = deliver,
                     .max_attempts = kMaxAttempts,
                     .timeout = std::chrono::seconds(60),
                     .backoff = retry_backoff});
  jobs::subscribe(reg, {.kind = "webhooks.fan_out"});
  reg.periodic({.name = "webhooks-prune",
                .interval = std::chrono::hours(24),
                .once_per_cluster = true,
                .run = [] { return prune(); }});
}

}  // namespace hsea::webhooks
