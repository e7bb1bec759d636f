// The limiter: Redis first, the node's own table when Redis cannot answer.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <unordered_map>

#include "core/log.hpp"
#include "ratelimit/internal.hpp"
#include "ratelimit/ratelimit.hpp"
#include "redis/client.hpp"

namespace hsea::ratelimit {
namespace {

namespace asio = boost::asio;
using boost::asio::awaitable;

// The script's SHA1 as this thread's connection knows it ("" until SCRIPT LOAD answered). A
// reconnected or restarted Redis answers NOSCRIPT, and the script is loaded again.
thread_local std::string t_sha;

std::atomic<bool> g_degraded{false};
std::atomic<std::int64_t> g_last_warning_us{0};

void warn_degraded(const char* why, const std::string& detail) {
  if (!g_degraded.exchange(true)) {
    log::warn("rate limits: Redis unavailable, deciding per node until it is back",
              {{"reason", why}, {"error", detail}});
    return;
  }
  // Still down: at most one line a minute.
  std::int64_t now = now_us(), last = g_last_warning_us.load();
  if (now - last > 60'000'000 && g_last_warning_us.compare_exchange_strong(last, now)) {
    log::warn("rate limits: still deciding per node", {{"reason", why}, {"error", detail}});
  }
}

awaitable<bool> load_script(redis::Client& client) {
  std::vector<std::string> load{"SCRIPT", "LOAD", std::string(kGcraScript)};
  redis::Reply reply = co_await client.command(std::move(load));
  if (reply.type != redis::Reply::Type::kString) {
    warn_degraded("SCRIPT LOAD failed", reply.str);
    co_return false;
  }
  t_sha = reply.str;
  co_return true;
}

std::optional<Decision> decision_of(const redis::Reply& reply) {
  if (reply.type != redis::Reply::Type::kArray || reply.elements.size() != 5) return std::nullopt;
  for (const redis::Reply& e : reply.elements) {
    if (e.type != redis::Reply::Type::kInteger) return std::nullopt;
  }
  return Decision{.allowed = reply.elements[0].integer == 1,
                  .remaining = reply.elements[1].integer,
                  .retry_after_us = reply.elements[2].integer,
                  .reset_us = reply.elements[3].integer,
                  .granted = reply.elements[4].integer};
}

// One EVALSHA (two more round trips only when the script must be loaded first); nullopt when
// Redis answered something else than a decision.
awaitable<std::optional<Decision>> redis_check(redis::Client& client, std::string key,
                                               const Rate rate, int cost, bool peek, bool up_to) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (t_sha.empty() && !co_await load_script(client)) co_return std::nullopt;
    std::vector<std::string> args{"EVALSHA",
                                  t_sha,
                                  "1",
                                  key,
                                  std::to_string(rate.interval_us()),
                                  std::to_string(rate.tolerance_us()),
                                  std::to_string(cost),
                                  peek ? "1" : "0",
                                  up_to ? "1" : "0"};
    redis::Reply reply = co_await client.command(std::move(args));
    if (reply.is_error() && reply.str.starts_with("NOSCRIPT")) {
      t_sha.clear();
      continue;
    }
    std::optional<Decision> d = decision_of(reply);
    if (!d) warn_degraded("unexpected reply", reply.str);
    co_return d;
  }
  co_return std::nullopt;
}

// Through Redis when it answers (`*shared` set), else from the node's table, where a lease would
// save nothing: `up_to` is asked of Redis only.
awaitable<Decision> decide(redis::Client* client, std::string key, Rate rate, int cost, bool peek,
                           bool up_to, bool* shared) {
  if (client != nullptr) {
    if (client->connected()) {
      try {
        std::optional<Decision> d = co_await redis_check(*client, key, rate, cost, peek, up_to);
        if (d) {
          if (g_degraded.exchange(false))
            log::info("rate limits: Redis is back, deciding cluster-wide");
          counters().redis_checks.fetch_add(1, std::memory_order_relaxed);
          *shared = true;
          co_return *d;
        }
      } catch (const redis::Unavailable& e) {
        warn_degraded("unavailable", e.what());
      }
    } else {
      warn_degraded("not connected", "");
    }
  }
  counters().local_checks.fetch_add(1, std::memory_order_relaxed);
  co_return local_table().check(key, rate, up_to ? 1 : cost, peek);
}

thread_local Leases t_leases;
// Per bucket, while this thread asks for its lease: woken (cancelled) when the answer is in.
thread_local std::unordered_map<std::string, std::shared_ptr<asio::steady_timer>> t_lease_waits;

}  // namespace

LocalTable& local_table() {
  static LocalTable table;
  return table;
}

Counters& counters() {
  static Counters c;
  return c;
}

bool degraded() { return g_degraded.load(std::memory_order_relaxed); }

awaitable<Decision> check(std::string key, Rate rate, int cost, bool peek) {
  return check_on(redis::client(), std::move(key), rate, cost, peek);
}

awaitable<Decision> check_on(redis::Client* client, std::string key, Rate rate, int cost,
                             bool peek) {
  bool shared = false;
  co_return co_await decide(client, std::move(key), rate, cost, peek, false, &shared);
}

awaitable<Decision> admit(std::string key, Rate rate) {
  return admit_on(redis::client(), std::move(key), rate);
}

awaitable<Decision> admit_on(redis::Client* client, std::string key, Rate rate) {
  bool shared = false;
  if (client == nullptr || lease_max(rate) <= 1) {
    co_return co_await decide(client, std::move(key), rate, 1, false, false, &shared);
  }
  // Coroutines resume on their own thread, so t_leases is the same table after each await.
  for (int round = 0; round < 3; ++round) {
    if (std::optional<Decision> d = t_leases.take(key, now_us())) {
      if (d->allowed) counters().lease_admits.fetch_add(1, std::memory_order_relaxed);
      co_return *d;
    }
    std::int64_t k = t_leases.ask(key, rate, now_us());
    if (k > 0) {
      // Requests that arrive meanwhile wait for this answer (one round trip for all of them)
      // rather than each sending its own check.
      // (The executor named first: g++ 12 mishandles a co_await among a constructor's arguments.)
      asio::any_io_executor executor = co_await asio::this_coro::executor;
      auto wake =
          std::make_shared<asio::steady_timer>(executor, asio::steady_timer::time_point::max());
      t_lease_waits[key] = wake;
      Decision d;
      try {
        d = co_await decide(client, key, rate, static_cast<int>(k), false, true, &shared);
      } catch (...) {  // cancelled: the lease is asked again by the next request
        t_leases.failed(key);
        t_lease_waits.erase(key);
        wake->cancel();
        throw;
      }
      if (shared) {
        d = t_leases.granted(key, rate, d, now_us());
      } else {
        t_leases.failed(key);
      }
      t_lease_waits.erase(key);
      wake->cancel();
      co_return d;
    }
    auto it = t_lease_waits.find(key);
    if (it == t_lease_waits.end()) break;
    std::shared_ptr<asio::steady_timer> wake = it->second;
    co_await wake->async_wait(asio::as_tuple(asio::use_awaitable));
  }
  // Still none (more waiters than the lease held): this one alone, exactly.
  co_return co_await decide(client, std::move(key), rate, 1, false, false, &shared);
}

}  // namespace hsea::ratelimit
