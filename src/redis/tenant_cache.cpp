#include "redis/tenant_cache.hpp"

#include <fmt/format.h>

#include <atomic>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>

#include "redis/client.hpp"

namespace hsea::redis {
namespace {

using boost::asio::awaitable;
using Clock = std::chrono::steady_clock;

std::atomic<TtlSource> g_ttl_source{nullptr};
std::atomic<long long> g_default_ttl{300};

// The process's own table: used without Redis. Cache calls already do I/O when Redis is set, so
// one short lock per call here is not what a request waits on.
struct Entry {
  std::string value;
  Clock::time_point expires;
};
struct LocalCache {
  std::mutex mutex;
  std::unordered_map<std::string, std::unordered_map<std::string, Entry>> tenants;
  std::map<std::string, CacheCounts> counts;
};
LocalCache& local() {
  static LocalCache c;
  return c;
}

void count(const std::string& tenant, bool hit) {
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  CacheCounts& n = c.counts[tenant];
  ++(hit ? n.hits : n.misses);
}

std::chrono::seconds ttl_for(const std::string& tenant, std::chrono::seconds ttl) {
  if (ttl.count() > 0) return ttl;
  if (TtlSource source = g_ttl_source.load(); source != nullptr) {
    if (auto configured = source(tenant); configured && configured->count() > 0) return *configured;
  }
  return std::chrono::seconds(g_default_ttl.load());
}

bool usable(Client* client) { return client != nullptr && client->connected(); }

}  // namespace

void set_ttl_source(TtlSource source) { g_ttl_source.store(source); }
void set_default_ttl(std::chrono::seconds ttl) { g_default_ttl.store(ttl.count()); }

std::string TenantCache::key_of(const std::string& tenant_id, const std::string& key) {
  return "cache:{t:" + tenant_id + "}:" + key;
}

awaitable<std::optional<std::string>> TenantCache::get(std::string tenant_id, std::string key) {
  std::optional<std::string> found;
  if (usable(client_)) {
    try {
      std::vector<std::string> args{"GET", key_of(tenant_id, key)};
      Reply r = co_await client_->command(std::move(args));
      if (r.type == Reply::Type::kString) found = std::move(r.str);
    } catch (const Unavailable&) {
      // A cache that cannot answer is a miss.
    }
  } else {
    LocalCache& c = local();
    std::lock_guard lock(c.mutex);
    auto t = c.tenants.find(tenant_id);
    if (t != c.tenants.end()) {
      auto e = t->second.find(key);
      if (e != t->second.end()) {
        if (e->second.expires > Clock::now()) {
          found = e->second.value;
        } else {
          t->second.erase(e);
        }
      }
    }
  }
  count(tenant_id, found.has_value());
  co_return found;
}

awaitable<void> TenantCache::put(std::string tenant_id, std::string key, std::string value,
                                 std::chrono::seconds ttl) {
  std::chrono::seconds lifetime = ttl_for(tenant_id, ttl);
  if (usable(client_)) {
    try {
      std::vector<std::string> args{"SET", key_of(tenant_id, key), std::move(value), "EX",
                                    std::to_string(lifetime.count())};
      co_await client_->command(std::move(args));
    } catch (const Unavailable&) {
    }
    co_return;
  }
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  auto& entries = c.tenants[tenant_id];
  auto now = Clock::now();
  // Bound memory: a full tenant table first forgets what has expired, then everything.
  if (entries.size() >= 10000) {
    std::erase_if(entries, [now](const auto& kv) { return kv.second.expires <= now; });
    if (entries.size() >= 10000) entries.clear();
  }
  entries[key] = Entry{std::move(value), now + lifetime};
}

awaitable<void> TenantCache::erase(std::string tenant_id, std::string key) {
  if (usable(client_)) {
    try {
      std::vector<std::string> args{"UNLINK", key_of(tenant_id, key)};
      co_await client_->command(std::move(args));
    } catch (const Unavailable&) {
    }
  }
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  if (auto t = c.tenants.find(tenant_id); t != c.tenants.end()) t->second.erase(key);
}

awaitable<void> TenantCache::invalidate(std::string tenant_id) {
  if (usable(client_)) {
    // The hash tag keeps the pattern to the tenant's slot in a cluster; the tenant id is a UUID,
    // so it holds no glob characters.
    std::string pattern = key_of(tenant_id, "*");
    std::string cursor = "0";
    do {
      std::vector<std::string> scan{"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
      Reply r = co_await client_->command(std::move(scan));
      if (r.type != Reply::Type::kArray || r.elements.size() != 2) break;
      cursor = r.elements[0].str;
      if (!r.elements[1].elements.empty()) {
        std::vector<std::string> unlink{"UNLINK"};
        for (Reply& k : r.elements[1].elements) unlink.push_back(std::move(k.str));
        co_await client_->command(std::move(unlink));
      }
    } while (cursor != "0");
  }
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  c.tenants.erase(tenant_id);
}

TenantCache tenant_cache() { return TenantCache(client()); }

CacheCounts cache_counts(const std::string& tenant_id) {
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  auto it = c.counts.find(tenant_id);
  return it != c.counts.end() ? it->second : CacheCounts{};
}

void render_cache_metrics(std::string& out) {
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  if (c.counts.empty()) return;
  out += "# TYPE hsea_tenant_cache_hits_total counter\n";
  for (const auto& [tenant, n] : c.counts) {
    fmt::format_to(std::back_inserter(out), "hsea_tenant_cache_hits_total{{tenant=\"{}\"}} {}\n",
                   tenant, n.hits);
  }
  out += "# TYPE hsea_tenant_cache_misses_total counter\n";
  for (const auto& [tenant, n] : c.counts) {
    fmt::format_to(std::back_inserter(out), "hsea_tenant_cache_misses_total{{tenant=\"{}\"}} {}\n",
                   tenant, n.misses);
  }
}

}  // namespace hsea::redis
