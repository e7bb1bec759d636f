#include "identity/auth_cache.hpp"

#include <algorithm>
#include <string>

namespace hsea::identity {
namespace {

std::atomic<std::uint64_t> g_epoch{1};
constexpr std::size_t kMaxEntries = 20000;

template <typename Map>
auto find_live(Map& map, const std::string& key) -> decltype(&map.begin()->second.value) {
  auto it = map.find(key);
  if (it == map.end()) return nullptr;
  if (std::chrono::steady_clock::now() >= it->second.expires) {
    map.erase(it);
    return nullptr;
  }
  return &it->second.value;
}

// One key for a user's session in a tenant. Each part is length-prefixed, so no choice of
// parts (claims may hold any text) can spell another combination's key.
std::string session_key(const std::string& user_id, const std::string& session_id,
                        const std::string& tenant_id) {
  std::string key;
  key.reserve(user_id.size() + session_id.size() + tenant_id.size() + 12);
  for (const std::string* part : {&user_id, &session_id, &tenant_id}) {
    key += std::to_string(part->size());
    key += ':';
    key += *part;
  }
  return key;
}

}  // namespace

void invalidate_auth_cache() { g_epoch.fetch_add(1, std::memory_order_release); }

AuthCache& AuthCache::for_this_thread() {
  thread_local AuthCache cache;
  return cache;
}

void AuthCache::sync_epoch() {
  std::uint64_t now = g_epoch.load(std::memory_order_acquire);
  if (now != epoch_) {
    keys_.clear();
    sessions_.clear();
    epoch_ = now;
  }
}

std::optional<CachedApiKey> AuthCache::api_key(const std::string& key_hash) {
  sync_epoch();
  if (auto* v = find_live(keys_, key_hash)) return *v;
  return std::nullopt;
}

void AuthCache::put_api_key(const std::string& key_hash, CachedApiKey entry,
                            std::chrono::milliseconds ttl) {
  sync_epoch();
  if (keys_.size() >= kMaxEntries) keys_.clear();
  keys_[key_hash] = {std::move(entry), std::chrono::steady_clock::now() +
                                           std::min<std::chrono::milliseconds>(ttl, kAuthCacheTtl)};
}

std::optional<CachedSession> AuthCache::session(const std::string& user_id,
                                                const std::string& session_id,
                                                const std::string& tenant_id) {
  sync_epoch();
  if (auto* v = find_live(sessions_, session_key(user_id, session_id, tenant_id))) return *v;
  return std::nullopt;
}

void AuthCache::put_session(const std::string& user_id, const std::string& session_id,
                            const std::string& tenant_id, CachedSession entry) {
  sync_epoch();
  if (sessions_.size() >= kMaxEntries) sessions_.clear();
  sessions_[session_key(user_id, session_id, tenant_id)] = {
      std::move(entry), std::chrono::steady_clock::now() + kAuthCacheTtl};
}

}  // namespace hsea::identity
