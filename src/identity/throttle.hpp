#pragma once
// Failed sign-in throttling per account and per client IP, in process (fixed one-hour
// windows). Thread-safe; the rate-limiting module will move it to Redis.
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

}  // namespace hsea::identity
