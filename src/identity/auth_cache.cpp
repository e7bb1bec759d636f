#include "identity/auth_cache.hpp"

#include <algorithm>
#include <string>

#include "core/log.hpp"
#include "db/db.hpp"
#include "runtime/runtime.hpp"

namespace hsea::identity {
namespace {

std::atomic<std::uint64_t> g_epoch{1};
constexpr std::size_t kMaxEntries = 20000;

// Delivered when the sending transaction commits (this one commits at once); every process's
// listener (identity module) empties its caches.
HSEA_QUERY kNotifyRevocation{"auth_cache_notify", "SELECT pg_notify('hsea_auth', '')"};

boost::asio::awaitable<void> notify_other_processes() {
  try {
    co_await db::pool().query(kNotifyRevocation);
  } catch (const std::exception& e) {
    log::warn("other processes keep cached admissions until they expire", {{"error", e.what()}});
  }
}

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

void invalidate_local_auth_cache() { g_epoch.fetch_add(1, std::memory_order_release); }

void invalidate_auth_cache() {
  invalidate_local_auth_cache();
  // Off the caller's path: the caller has committed, and the notification only shortens what
  // kAuthCacheTtl bounds anyway. Without an I/O thread (a command, a test) there is no pool.
  if (runtime::ThreadContext* t = runtime::ThreadContext::current(); t != nullptr) {
    runtime::spawn(t->io(), notify_other_processes(), "auth cache notification");
  }
}

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

bool AuthCache::fresh_since_miss(std::unordered_map<std::string, std::uint64_t>& misses,
                                 const std::string& key) {
  auto it = misses.find(key);
  if (it == misses.end()) return true;  // not looked up first: nothing to compare
  bool fresh = it->second == g_epoch.load(std::memory_order_acquire);
  misses.erase(it);
  return fresh;
}

std::optional<CachedApiKey> AuthCache::api_key(const std::string& key_hash) {
  sync_epoch();
  if (auto* v = find_live(keys_, key_hash)) return *v;
  if (key_misses_.size() >= kMaxEntries) key_misses_.clear();
  key_misses_[key_hash] = epoch_;
  return std::nullopt;
}

void AuthCache::put_api_key(const std::string& key_hash, CachedApiKey entry,
                            std::chrono::milliseconds ttl) {
  if (!fresh_since_miss(key_misses_, key_hash)) return;
  sync_epoch();
  if (keys_.size() >= kMaxEntries) keys_.clear();
  keys_[key_hash] = {std::move(entry), std::chrono::steady_clock::now() +
                                           std::min<std::chrono::milliseconds>(ttl, kAuthCacheTtl)};
}

std::optional<CachedSession> AuthCache::session(const std::string& user_id,
                                                const std::string& session_id,
                                                const std::string& tenant_id) {
  sync_epoch();
  std::string key = session_key(user_id, session_id, tenant_id);
  if (auto* v = find_live(sessions_, key)) return *v;
  if (session_misses_.size() >= kMaxEntries) session_misses_.clear();
  session_misses_[std::move(key)] = epoch_;
  return std::nullopt;
}

void AuthCache::put_session(const std::string& user_id, const std::string& session_id,
                            const std::string& tenant_id, CachedSession entry) {
  std::string key = session_key(user_id, session_id, tenant_id);
  if (!fresh_since_miss(session_misses_, key)) return;
  sync_epoch();
  if (sessions_.size() >= kMaxEntries) sessions_.clear();
  sessions_[std::move(key)] = {std::move(entry), std::chrono::steady_clock::now() + kAuthCacheTtl};
}

}  // namespace hsea::identity
