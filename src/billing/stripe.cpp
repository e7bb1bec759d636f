// The Stripe client: Stripe's form encoding, webhook signatures, and requests through libcurl on
// the blocking I/O pool with a pinned Stripe-Version, Idempotency-Key on every POST and retries.
#include <curl/curl.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <charconv>
#include <random>
#include <thread>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "runtime/registrar.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using boost::json::value;

void percent_encode(std::string& out, std::string_view text, bool keep_brackets) {
  static const char* kHex = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_brackets && (c == '[' || c == ']'))) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}

void encode_value(std::string& out, const std::string& key, const value& v) {
  auto pair = [&](std::string_view text) {
    if (!out.empty()) out += '&';
    percent_encode(out, key, true);
    out += '=';
    percent_encode(out, text, false);
  };
  switch (v.kind()) {
    case boost::json::kind::object:
      for (const auto& [k, member] : v.get_object()) {
        encode_value(out, key + "[" + std::string(k) + "]", member);
      }
      break;
    case boost::json::kind::array: {
      std::size_t i = 0;
      for (const value& item : v.get_array()) {
        encode_value(out, key + "[" + std::to_string(i++) + "]", item);
      }
      break;
    }
    case boost::json::kind::string:
      pair(v.get_string());
      break;
    case boost::json::kind::bool_:
      pair(v.get_bool() ? "true" : "false");
      break;
    case boost::json::kind::null:
      pair("");
      break;
    default:
      pair(boost::json::serialize(v));  // numbers as JSON writes them
  }
}

// ------------------------------------------------------------------------------ libcurl

struct Raw {
  int status = 0;  // 0: no HTTP answer
  std::string body;
  std::string error;
  std::string should_retry;  // the Stripe-Should-Retry header, lower case
  int retry_after = 0;       // seconds, from Retry-After
};

constexpr std::size_t kMaxReplyBytes = 8 << 20;

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* raw = static_cast<Raw*>(user);
  std::size_t bytes = size * n;
  if (raw->body.size() + bytes > kMaxReplyBytes) return 0;
  raw->body.append(data, bytes);
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* raw = static_cast<Raw*>(user);
  std::string_view line(data, size * n);
  auto colon = line.find(':');
  if (colon != std::string_view::npos) {
    std::string name(line.substr(0, colon));
    std::ranges::transform(name, name.begin(), [](unsigned char c) { return std::tolower(c); });
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) {
      v.remove_suffix(1);
    }
    if (name == "stripe-should-retry") {
      raw->should_retry = std::string(v);
    } else if (name == "retry-after") {
      std::from_chars(v.data(), v.data() + v.size(), raw->retry_after);
    }
  }
  return size * n;
}

struct Call {
  std::string method;  // GET, POST, DELETE
  std::string url;
  std::string body;  // form-encoded (POST)
  std::string key;
  std::string idempotency_key;
};

// Blocking: runs on the I/O pool.
Raw perform(const Call& call) {
  Raw raw;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    raw.error = "libcurl could not start a transfer";
    return raw;
  }
  char errors[CURL_ERROR_SIZE] = {};
  curl_slist* headers = nullptr;
  std::vector<std::string> lines{
      "Authorization: Bearer " + call.key, std::string("Stripe-Version: ") + kStripeVersion,
      "User-Agent: hsea-billing/1", "Accept: application/json", "Expect:"};
  if (call.method == "POST") {
    lines.emplace_back("Content-Type: application/x-www-form-urlencoded");
    lines.push_back("Idempotency-Key: " + call.idempotency_key);
  }
  for (const std::string& h : lines) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(curl, CURLOPT_PROXY, "");
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  if (call.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, call.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(call.body.size()));
  } else if (call.method == "DELETE") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
  }
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &raw);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &raw);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errors);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    raw.status = 0;
    raw.error = std::string(curl_easy_strerror(rc)) + (errors[0] ? std::string(": ") + errors : "");
  } else {
    raw.status = static_cast<int>(status);
  }
  return raw;
}

// Whether Stripe asks for (or the failure allows) another attempt: Stripe-Should-Retry decides
// when sent; otherwise network errors, 409 (a concurrent idempotent request), 429 and 5xx.
bool retryable(const Raw& raw) {
  if (raw.should_retry == "false") return false;
  if (raw.should_retry == "true") return true;
  return raw.status == 0 || raw.status == 409 || raw.status == 429 || raw.status >= 500;
}

// 0.5 s doubling to 8 s, with jitter (half to full), or Retry-After when Stripe sends one.
std::chrono::milliseconds backoff(int attempt, int retry_after) {
  if (retry_after > 0) return std::chrono::seconds(std::min(retry_after, 30));
  static thread_local std::minstd_rand rng{std::random_device{}()};
  long step = 500L << std::min(attempt - 1, 4);
  return std::chrono::milliseconds(step / 2 + rng() % (step / 2 + 1));
}

std::string append_query(std::string url, const object& query) {
  std::string q = form_encode(query);
  if (!q.empty()) url += "?" + q;
  return url;
}

void log_retry(const Call& call, const Raw& raw, int attempt) {
  log::warn("stripe request retried",
            {{"method", call.method},
             {"path", call.url.substr(state().settings.stripe_api_base.size())},
             {"status", raw.status},
             {"error", raw.error},
             {"attempt", attempt}});
}

StripeReply reply_of(const Call& call, const Raw& raw) {
  const Settings& s = state().settings;
  if (raw.status == 0 || raw.status >= 500 || raw.status == 429) {
    throw core::ApiError(core::ErrorCode::kServiceUnavailable,
                         "The payment provider cannot be reached; try again later.")
        .retry_after(30)
        .internal("stripe " + call.method + " " + call.url + ": " +
                  (raw.error.empty() ? "status " + std::to_string(raw.status) : raw.error));
  }
  StripeReply reply;
  reply.status = raw.status;
  boost::system::error_code ec;
  value parsed = boost::json::parse(raw.body, ec);
  if (!ec && parsed.is_object()) reply.body = std::move(parsed.as_object());
  if (!reply.ok()) {
    log::warn("stripe request refused", {{"method", call.method},
                                         {"path", call.url.substr(s.stripe_api_base.size())},
                                         {"status", raw.status},
                                         {"error", reply.error_message()}});
  }
  return reply;
}

awaitable<StripeReply> send(Call call) {
  require_stripe();
  const Settings& s = state().settings;
  call.key = s.stripe_secret_key;
  Raw raw;
  for (int attempt = 1;; ++attempt) {
    auto run = [call] { return perform(call); };
    raw = co_await runtime::io_pool().run(std::move(run));
    if (!retryable(raw) || attempt > s.stripe_max_retries) break;
    log_retry(call, raw, attempt);
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    timer.expires_after(backoff(attempt, raw.retry_after));
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
  co_return reply_of(call, raw);
}

}  // namespace

std::string form_encode(const object& params) {
  std::string out;
  for (const auto& [k, v] : params) encode_value(out, std::string(k), v);
  return out;
}

std::string verify_signature(std::string_view header, std::string_view payload,
                             const std::vector<std::string>& secrets, std::int64_t now,
                             std::int64_t tolerance) {
  std::optional<std::int64_t> t;
  std::vector<std::string_view> v1;
  while (!header.empty()) {
    auto comma = header.find(',');
    std::string_view part = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    auto eq = part.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view name = part.substr(0, eq), text = part.substr(eq + 1);
    if (name == "t") {
      std::int64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc() && end == text.data() + text.size()) t = n;
    } else if (name == "v1") {
      v1.push_back(text);
    }
  }
  if (!t) return "no timestamp in Stripe-Signature";
  if (v1.empty()) return "no v1 signature in Stripe-Signature";
  if (secrets.empty()) return "no webhook secret is configured";
  if (*t < now - tolerance || *t > now + tolerance) return "timestamp outside the tolerance";
  std::string signed_text = std::to_string(*t) + "." + std::string(payload);
  for (const std::string& secret : secrets) {
    std::string expected = core::hmac_sha256(secret, signed_text);
    std::string hex;
    static const char* kHex = "0123456789abcdef";
    for (unsigned char c : expected) {
      hex += kHex[c >> 4];
      hex += kHex[c & 15];
    }
    for (std::string_view candidate : v1) {
      if (core::constant_time_equal(hex, candidate)) return "";
    }
  }
  return "no signature matches";
}

std::string sign_payload(std::string_view payload, std::string_view secret, std::int64_t t) {
  std::string mac = core::hmac_sha256(secret, std::to_string(t) + "." + std::string(payload));
  std::string hex;
  static const char* kHex = "0123456789abcdef";
  for (unsigned char c : mac) {
    hex += kHex[c >> 4];
    hex += kHex[c & 15];
  }
  return "t=" + std::to_string(t) + ",v1=" + hex;
}

std::string StripeReply::error_message() const {
  if (const auto* e = body.if_contains("error"); e != nullptr && e->is_object()) {
    if (const auto* m = e->as_object().if_contains("message"); m != nullptr && m->is_string()) {
      return std::string(m->as_string());
    }
  }
  return "status " + std::to_string(status);
}

awaitable<StripeReply> StripeClient::get(std::string path, object query) {
  Call call{.method = "GET", .url = append_query(state().settings.stripe_api_base + path, query)};
  co_return co_await send(std::move(call));
}

awaitable<StripeReply> StripeClient::post(std::string path, object params,
                                          std::string idempotency_key) {
  Call call{.method = "POST",
            .url = state().settings.stripe_api_base + path,
            .body = form_encode(params),
            .idempotency_key = std::move(idempotency_key)};
  co_return co_await send(std::move(call));
}

awaitable<StripeReply> StripeClient::del(std::string path, object query) {
  Call call{.method = "DELETE",
            .url = append_query(state().settings.stripe_api_base + path, query)};
  co_return co_await send(std::move(call));
}

StripeReply stripe_blocking(const std::string& method, const std::string& path,
                            const object& params, const std::string& idempotency_key) {
  require_stripe();
  const Settings& s = state().settings;
  Call call{.method = method,
            .url = method == "GET" ? append_query(s.stripe_api_base + path, params)
                                   : s.stripe_api_base + path,
            .body = method == "POST" ? form_encode(params) : "",
            .key = s.stripe_secret_key,
            .idempotency_key = idempotency_key};
  Raw raw;
  for (int attempt = 1;; ++attempt) {
    raw = perform(call);
    if (!retryable(raw) || attempt > s.stripe_max_retries) break;
    log_retry(call, raw, attempt);
    std::this_thread::sleep_for(backoff(attempt, raw.retry_after));
  }
  return reply_of(call, raw);
}

bool StripeClient::configured() const { return !state().settings.stripe_secret_key.empty(); }

StripeClient& stripe() {
  static StripeClient client;  // stateless: the settings live in the module's state
  return client;
}

void require_stripe() {
  if (state().settings.stripe_secret_key.empty()) {
    throw core::ApiError(core::ErrorCode::kBillingNotConfigured,
                         "Billing is not configured on this server (no Stripe key).")
        .internal("HSEA_STRIPE_SECRET_KEY is not set");
  }
}

}  // namespace hsea::billing
