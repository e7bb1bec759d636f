#pragma once
// Process-wide services shared by every I/O thread. Each is thread-safe.
#include <atomic>
#include <memory>
#include <mutex>

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
    owned_keys_ = std::move(keys);
    keys_.store(owned_keys_.get(), std::memory_order_release);
  }

 private:
  std::mutex keys_mutex_;
  std::unique_ptr<identity::KeyStore> owned_keys_;
  std::atomic<const identity::KeyStore*> keys_{nullptr};
};

}  // namespace hsea::app
