#include "identity/throttle.hpp"

#include <algorithm>

namespace hsea::identity {
namespace {
constexpr auto kWindow = std::chrono::hours(1);
}

std::optional<int> LoginThrottle::blocked(std::unordered_map<std::string, Window>& windows,
                                          const std::string& key, int max,
                                          std::chrono::steady_clock::time_point now) {
  auto it = windows.find(key);
  if (it == windows.end()) return std::nullopt;
  if (now - it->second.start >= kWindow) {
    windows.erase(it);
    return std::nullopt;
  }
  if (it->second.failures < max) return std::nullopt;
  auto left = std::chrono::duration_cast<std::chrono::seconds>(it->second.start + kWindow - now);
  return std::max<int>(1, static_cast<int>(left.count()));
}

std::optional<int> LoginThrottle::retry_after(const std::string& account, const std::string& ip) {
  std::lock_guard lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  auto a = blocked(accounts_, account, max_per_account_, now);
  auto i = blocked(ips_, ip, max_per_ip_, now);
  if (a && i) return std::max(*a, *i);
  return a ? a : i;
}

void LoginThrottle::record_failure(const std::string& account, const std::string& ip) {
  std::lock_guard lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  for (auto* entry : {&accounts_[account], &ips_[ip]}) {
    if (entry->failures == 0 || now - entry->start >= kWindow) {
      entry->start = now;
      entry->failures = 0;
    }
    ++entry->failures;
  }
  // Bound memory under a spray of random accounts: forget expired windows now and then.
  if (accounts_.size() > 100000)
    std::erase_if(accounts_, [&](auto& kv) { return now - kv.second.start >= kWindow; });
  if (ips_.size() > 100000)
    std::erase_if(ips_, [&](auto& kv) { return now - kv.second.start >= kWindow; });
}

}  // namespace hsea::identity
