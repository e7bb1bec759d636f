#include "identity/throttle.hpp"

#include "core/error.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <iterator>

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

std::string SignupThrottle::client_key(const std::string& ip) {
  in6_addr v6{};
  if (inet_pton(AF_INET6, ip.c_str(), &v6) != 1) return ip;  // IPv4, or not an address
  char text[INET6_ADDRSTRLEN] = {};
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    inet_ntop(AF_INET, &v6.s6_addr[12], text, sizeof text);
    return text;
  }
  std::fill(std::begin(v6.s6_addr) + 8, std::end(v6.s6_addr), 0);
  inet_ntop(AF_INET6, &v6, text, sizeof text);
  return std::string(text) + "/64";
}

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

void LoginThrottle::refuse_if_blocked(const std::string& account, const std::string& ip,
                                      std::string detail) {
  if (auto wait = retry_after(account, ip)) {
    throw core::ApiError(core::ErrorCode::kRateLimited, std::move(detail)).retry_after(*wait);
  }
}

}  // namespace hsea::identity
