#include "identity/throttle.hpp"

#include "core/crypto.hpp"
#include "core/error.hpp"
#include "ratelimit/ratelimit.hpp"
#include "ratelimit/rules.hpp"

#include <algorithm>
#include <iterator>

namespace hsea::identity {
namespace {
constexpr auto kWindow = std::chrono::hours(1);

ratelimit::Rate per_hour(int max) { return ratelimit::Rate{max, 3600, max}; }

// Addresses of accounts are personal data: buckets are named by a digest.
std::string account_bucket(const std::string& account) {
  return ratelimit::bucket_key("", "login", "account", core::sha256_hex(account).substr(0, 32));
}
std::string ip_bucket(const std::string& ip) {
  return ratelimit::bucket_key("", "login", "ip", ratelimit::client_key(ip));
}

}  // namespace

boost::asio::awaitable<void> LoginThrottle::refuse_if_blocked(std::string account, std::string ip,
                                                              const char* detail) const {
  std::string account_key = account_bucket(account), ip_key = ip_bucket(ip);
  ratelimit::Rate account_rate = per_hour(max_per_account_), ip_rate = per_hour(max_per_ip_);
  ratelimit::Decision a = co_await ratelimit::check(account_key, account_rate, 1, true);
  ratelimit::Decision i = co_await ratelimit::check(ip_key, ip_rate, 1, true);
  if (a.allowed && i.allowed) co_return;
  std::int64_t wait_us =
      std::max<std::int64_t>(a.allowed ? 0 : a.retry_after_us, i.allowed ? 0 : i.retry_after_us);
  int wait = static_cast<int>(std::max<std::int64_t>(1, (wait_us + 999'999) / 1'000'000));
  throw core::ApiError(core::ErrorCode::kRateLimited, detail).retry_after(wait);
}

boost::asio::awaitable<void> LoginThrottle::record_failure(std::string account,
                                                           std::string ip) const {
  std::string account_key = account_bucket(account), ip_key = ip_bucket(ip);
  ratelimit::Rate account_rate = per_hour(max_per_account_), ip_rate = per_hour(max_per_ip_);
  co_await ratelimit::check(account_key, account_rate);
  co_await ratelimit::check(ip_key, ip_rate);
}

std::string SignupThrottle::client_key(const std::string& ip) { return ratelimit::client_key(ip); }

std::optional<int> SignupThrottle::admit(const std::string& ip, int max_per_hour) {
  if (max_per_hour <= 0) return std::nullopt;
  std::string key = client_key(ip);
  std::lock_guard lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  Window& w = windows_[key];
  if (w.count == 0 || now - w.start >= kWindow) {
    w.start = now;
    w.count = 0;
  }
  if (w.count >= max_per_hour) {
    auto left = std::chrono::duration_cast<std::chrono::seconds>(w.start + kWindow - now);
    return std::max<int>(1, static_cast<int>(left.count()));
  }
  ++w.count;
  // Bound memory under sign-ups from many addresses: forget expired windows now and then.
  if (windows_.size() > 100000) {
    std::erase_if(windows_, [&](auto& kv) { return now - kv.second.start >= kWindow; });
  }
  return std::nullopt;
}

}  // namespace hsea::identity
