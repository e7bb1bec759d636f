#pragma once
// What authentication learned about a credential, remembered briefly per I/O thread so an
// authenticated request costs one database round trip (its own query), not two.
//
// Staleness is bounded two ways: entries live at most kAuthCacheTtl, and any revocation (API key
// deleted or rotated, session revoked, membership or role changed, tenant suspended) bumps a
// process-wide epoch that empties every thread's cache before its next use. The revoking
// process tells the others through PostgreSQL (NOTIFY hsea_auth after its commit; every process
// LISTENs), so they empty theirs within milliseconds; a lost notification costs at most
// kAuthCacheTtl. Not a shared (Redis) cache: see docs/ARCHITECTURE.md, "Per-thread auth cache".
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace hsea::identity {

constexpr auto kAuthCacheTtl = std::chrono::seconds(5);

struct CachedApiKey {
  std::string tenant_id;
  std::string key_id;
  std::vector<std::string> scopes;
};

struct CachedSession {
  std::string role;           // "" when not a member of the tenant
  std::string tenant_status;  // "" when no tenant
  bool mfa_missing = false;   // the tenant requires MFA and the session's sign-in had none
  // sessions.csrf_generation: the CSRF check of a cookie request needs no query of its own.
  std::int64_t csrf_generation = 0;
  bool staff = false;  // the user is platform staff (platform_staff)
};

// Call after any change that must end access at once (after its commit): empties this
// process's caches and, from an I/O thread, notifies every other process.
void invalidate_auth_cache();
// Empties this process's caches only: what a notification from another process does.
void invalidate_local_auth_cache();

// One per I/O thread (thread_local); never shared, so never locked.
class AuthCache {
 public:
  static AuthCache& for_this_thread();

  std::optional<CachedApiKey> api_key(const std::string& key_hash);
  // Remembered for kAuthCacheTtl, or less when the key expires sooner.
  void put_api_key(const std::string& key_hash, CachedApiKey entry,
                   std::chrono::milliseconds ttl = kAuthCacheTtl);

  // Keyed by user, session and tenant together: a hit vouches for this user's session only
  // (a token naming another user than its session's owner never matches a cached entry).
  std::optional<CachedSession> session(const std::string& user_id, const std::string& session_id,
                                       const std::string& tenant_id);
  void put_session(const std::string& user_id, const std::string& session_id,
                   const std::string& tenant_id, CachedSession entry);

 private:
  template <typename T>
  struct Entry {
    T value;
    std::chrono::steady_clock::time_point expires;
  };
  void sync_epoch();
  // A put is kept only when no revocation was heard of since its key's miss: the query that
  // followed the miss may have read what the revocation changed.
  bool fresh_since_miss(std::unordered_map<std::string, std::uint64_t>& misses,
                        const std::string& key);
  std::uint64_t epoch_ = 0;
  std::unordered_map<std::string, Entry<CachedApiKey>> keys_;
  std::unordered_map<std::string, Entry<CachedSession>> sessions_;
  std::unordered_map<std::string, std::uint64_t> key_misses_, session_misses_;
};

}  // namespace hsea::identity
