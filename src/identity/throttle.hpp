#pragma once
// Failed sign-in throttling per account and per client IP, and sign-up throttling per client
// address, in process (fixed one-hour windows). Thread-safe; the rate-limiting module will move
// them to Redis.
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

namespace hsea::identity {

class LoginThrottle {
 public:
  LoginThrottle(int max_per_account, int max_per_ip)
      : max_per_account_(max_per_account), max_per_ip_(max_per_ip) {}

  // Seconds to wait when either limit is used up, otherwise nullopt.
  std::optional<int> retry_after(const std::string& account, const std::string& ip);
  // The same as a refusal: ApiError 429 with `detail` and Retry-After.
  void refuse_if_blocked(const std::string& account, const std::string& ip, std::string detail);
  void record_failure(const std::string& account, const std::string& ip);

 private:
  struct Window {
    std::chrono::steady_clock::time_point start;
    int failures = 0;
  };
  std::optional<int> blocked(std::unordered_map<std::string, Window>& windows,
                             const std::string& key, int max,
                             std::chrono::steady_clock::time_point now);
  int max_per_account_;
  int max_per_ip_;
  std::mutex mutex_;
  std::unordered_map<std::string, Window> accounts_;
  std::unordered_map<std::string, Window> ips_;
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
