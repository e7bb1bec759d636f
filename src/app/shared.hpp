#pragma once
// Process-wide services shared by every I/O thread. Each is thread-safe.
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/blocking.hpp"
#include "core/error.hpp"
#include "identity/throttle.hpp"
#include "identity/tokens.hpp"

namespace hsea::app {

struct Shared {
  Shared(int blocking_threads, int login_failures_per_account, int login_failures_per_ip)
      : blocking(blocking_threads), throttle(login_failures_per_account, login_failures_per_ip) {}
  core::BlockingPool blocking;
  identity::LoginThrottle throttle;

  // The signing keys, once loaded (the server starts even while PostgreSQL is down; token
  // endpoints answer 503 until then).
  const identity::KeyStore& keys() const {
    const identity::KeyStore* k = keys_.load(std::memory_order_acquire);
    if (k == nullptr) {
      throw core::ApiError(core::ErrorCode::kServiceUnavailable,
                           "Signing keys are not loaded yet; try again shortly.")
          .retry_after(2);
    }
    return *k;
  }
  void set_keys(std::unique_ptr<identity::KeyStore> keys) {
    std::lock_guard lock(keys_mutex_);
    // Earlier stores stay alive: a request on another thread may still be using one.
    owned_keys_.push_back(std::move(keys));
    keys_.store(owned_keys_.back().get(), std::memory_order_release);
  }

  // After `hsea keys rotate`, other nodes sign with a key this one has not loaded: reload the
  // keys (blocking; at most once per 10 s) when a token names an unknown kid.
  bool reload_keys(const std::string& database_url, const std::string& secret,
                   const std::string& issuer) {
    auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_reload_.load();
    if (now - last < std::chrono::steady_clock::duration(std::chrono::seconds(10)).count() ||
        !last_reload_.compare_exchange_strong(last, now)) {
      return false;
    }
    set_keys(identity::KeyStore::load(database_url, secret, issuer));
    return true;
  }

 private:
  std::mutex keys_mutex_;
  std::vector<std::unique_ptr<identity::KeyStore>> owned_keys_;
  std::atomic<const identity::KeyStore*> keys_{nullptr};
  std::atomic<std::chrono::steady_clock::rep> last_reload_{0};
};

}  // namespace hsea::app
