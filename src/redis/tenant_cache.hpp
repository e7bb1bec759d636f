#pragma once
// HSEA-037: the one tenant cache. Every key carries its tenant in a Redis Cluster hash tag
// ("cache:{t:<tenant>}:<key>"), so one tenant's entries share a slot and one tenant's key can
// never name another's entry. With Redis the cache is shared by every node; without it (or
// while it is down) each process keeps its own. Per-tenant invalidation, TTL from the tenant's
// configuration, and hit/miss counts per tenant in /metrics (hsea_tenant_cache_*).
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>

namespace hsea::redis {

class Client;

// The tenant's configured cache TTL, or nullopt for the default (HSEA_TENANT_CACHE_TTL_SECONDS).
// Set by the module that owns tenant configuration; runs in process (no I/O).
using TtlSource = std::optional<std::chrono::seconds> (*)(const std::string& tenant_id);
void set_ttl_source(TtlSource source);
void set_default_ttl(std::chrono::seconds ttl);

class TenantCache {
 public:
  // `client` null: the process's own table only.
  explicit TenantCache(Client* client) : client_(client) {}

  boost::asio::awaitable<std::optional<std::string>> get(std::string tenant_id, std::string key);
  // `ttl` zero: the tenant's configured TTL, else the default.
  boost::asio::awaitable<void> put(std::string tenant_id, std::string key, std::string value,
                                   std::chrono::seconds ttl = std::chrono::seconds(0));
  boost::asio::awaitable<void> erase(std::string tenant_id, std::string key);
  // Drops every entry of the tenant (in Redis: SCAN of its slot's pattern, UNLINK in batches;
  // and this process's table).
  boost::asio::awaitable<void> invalidate(std::string tenant_id);

  // "cache:{t:<tenant>}:<key>"
  static std::string key_of(const std::string& tenant_id, const std::string& key);

  // Entries that must never outlive a change of what they copy (a second-level cache in front
  // of PostgreSQL) use these four instead of get/put. Each such key has a generation, kept
  // beside it in the tenant's slot:
  //   auto [value, stamp] = co_await cache.lookup(t, k);   // on a miss: read the database,
  //   co_await cache.fill(t, k, loaded, stamp, ttl);       // then offer what it answered
  // and a writer brackets its commit:
  //   co_await cache.begin_change(t, k); commit; co_await cache.end_change(t, k);
  // begin_change drops the entry and holds fills off until end_change; both move the
  // generation on, so a fill whose read may predate the commit (its stamp is older) stores
  // nothing. No moment after the commit finds the old entry, which matters to readers that
  // refill a faster per-thread cache as soon as they hear of the change.
  struct Lookup {
    std::optional<std::string> value;
    std::string stamp;  // for fill()
  };
  boost::asio::awaitable<Lookup> lookup(std::string tenant_id, std::string key);
  boost::asio::awaitable<void> fill(std::string tenant_id, std::string key, std::string value,
                                    std::string stamp, std::chrono::seconds ttl);
  boost::asio::awaitable<void> begin_change(std::string tenant_id, std::string key);
  boost::asio::awaitable<void> end_change(std::string tenant_id, std::string key);
  // Forgets `key` of every tenant in this process's table (not Redis) and refuses fills of it
  // stamped before: for a process that hears of a change through another channel.
  static void forget_local(const std::string& key);

 private:
  boost::asio::awaitable<void> change(std::string tenant_id, std::string key, bool begins);
  Client* client_;
};

// The calling I/O thread's cache (its Redis client, or the process table without Redis).
TenantCache tenant_cache();

struct CacheCounts {
  long long hits = 0;
  long long misses = 0;
};
CacheCounts cache_counts(const std::string& tenant_id);
// Appends hsea_tenant_cache_hits_total / _misses_total per tenant.
void render_cache_metrics(std::string& out);

}  // namespace hsea::redis
