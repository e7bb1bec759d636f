#pragma once
// Failed sign-in throttling per account and per client address (on the rate limiter), and
// sign-up throttling per client address (in process, fixed one-hour windows).
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace hsea::identity {

// Failed sign-ins per account and per client address (IPv6 per /64), on the rate limiter
// (src/ratelimit): its buckets live in Redis, so the limits hold across nodes (per node while
// Redis is unset or down). Each limit is a GCRA bucket of `max` failures refilling over an hour:
// `max` failures at once, then one more every hour/max.
class LoginThrottle {
 public:
  LoginThrottle(int max_per_account, int max_per_ip)
      : max_per_account_(max_per_account), max_per_ip_(max_per_ip) {}

  // Throws ApiError 429 with `detail` and Retry-After while either limit is used up.
  boost::asio::awaitable<void> refuse_if_blocked(std::string account, std::string ip,
                                                 const char* detail) const;
  boost::asio::awaitable<void> record_failure(std::string account, std::string ip) const;

 private:
  int max_per_account_;
  int max_per_ip_;
};

// Sign-ups per client address, in process (fixed one-hour windows): each sign-up costs an
// Argon2id hash, so the check comes before hashing. IPv6 clients count per /64, the block one
// host usually holds. Thread-safe; the rate-limiting module will move it to Redis.
class SignupThrottle {
 public:
  // Counts one sign-up from `ip` and returns nullopt while the address is within
  // `max_per_hour`; once it is used up, returns the seconds until the window ends (and counts
  // nothing). A limit of 0 admits everything.
  std::optional<int> admit(const std::string& ip, int max_per_hour);

  // The key an address counts under: IPv4 as it is, IPv6 as its /64 ("2001:db8:1:2::/64"),
  // IPv4-mapped IPv6 as the IPv4 address; anything else (not an address) as given.
  static std::string client_key(const std::string& ip);

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    int count = 0;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, Window> windows_;
};

}  // namespace hsea::identity
