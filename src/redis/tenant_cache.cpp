#include "redis/tenant_cache.hpp"

#include <fmt/format.h>

#include <atomic>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "core/ids.hpp"
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
  // Generations of (tenant, key) for lookup/fill, unique in the process; a pending change holds
  // fills off until its end (or its expiry, should the writer never get there).
  std::map<std::pair<std::string, std::string>, std::uint64_t> generations;
  std::map<std::pair<std::string, std::string>, Clock::time_point> pending;
  std::uint64_t next_generation = 1;

  // Both under the mutex.
  std::optional<std::string> find(const std::string& tenant, const std::string& key) {
    auto t = tenants.find(tenant);
    if (t == tenants.end()) return std::nullopt;
    auto e = t->second.find(key);
    if (e == t->second.end()) return std::nullopt;
    if (e->second.expires > Clock::now()) return e->second.value;
    t->second.erase(e);
    return std::nullopt;
  }
  void store(const std::string& tenant, const std::string& key, std::string value,
             std::chrono::seconds lifetime) {
    auto& entries = tenants[tenant];
    auto now = Clock::now();
    // Bound memory: a full tenant table first forgets what has expired, then everything.
    if (entries.size() >= 10000) {
      std::erase_if(entries, [now](const auto& kv) { return kv.second.expires <= now; });
      if (entries.size() >= 10000) entries.clear();
    }
    entries[key] = Entry{std::move(value), now + lifetime};
  }
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
    found = c.find(tenant_id, key);
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
  c.store(tenant_id, key, std::move(value), lifetime);
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

// ------------------------------------------------------------------ lookup, fill and changes
//
// In Redis the generation is "<key>#gen" and a pending change "<key>#pending", in the tenant's
// slot like the entry, so each step is one script on one slot (Cluster allows that). A
// generation is a fresh UUID, never a counter: one dropped (invalidate, expiry) and made anew
// cannot come back equal to a stamp taken before. Stamps say where they were taken ("r:" Redis,
// "l:" this process), so a fill never crosses from one to the other.
namespace {

constexpr const char* kGenerationTtl = "86400";         // a day: longer than any read it guards
constexpr auto kPendingTtl = std::chrono::seconds(30);  // a writer that never ends its change

// KEYS: entry, generation. ARGV: a generation to start with.
constexpr const char* kLookupScript =
    "local g = redis.call('GET', KEYS[2]) "
    "if not g then g = ARGV[1] redis.call('SET', KEYS[2], g, 'EX', ARGV[2]) end "
    "return {redis.call('GET', KEYS[1]), g}";
// KEYS: entry, generation, pending. ARGV: value, stamp, ttl.
constexpr const char* kFillScript =
    "if redis.call('GET', KEYS[2]) == ARGV[2] and redis.call('EXISTS', KEYS[3]) == 0 then "
    "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3]) return 1 end return 0";
// KEYS: entry, generation, pending. ARGV: the new generation, its TTL, the pending TTL (0: the
// change ends).
constexpr const char* kChangeScript =
    "redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2]) redis.call('DEL', KEYS[1]) "
    "if ARGV[3] == '0' then redis.call('DEL', KEYS[3]) "
    "else redis.call('SET', KEYS[3], '1', 'EX', ARGV[3]) end return 1";

std::vector<std::string> script(const char* body, const std::string& tenant, const std::string& key,
                                int nkeys) {
  std::string entry = TenantCache::key_of(tenant, key);
  std::vector<std::string> args{"EVAL", body, std::to_string(nkeys), entry, entry + "#gen"};
  if (nkeys == 3) args.push_back(entry + "#pending");
  return args;
}

// Under the mutex.
std::uint64_t local_generation(LocalCache& c, const std::string& tenant, const std::string& key) {
  auto [it, added] = c.generations.try_emplace({tenant, key}, 0);
  if (added) it->second = c.next_generation++;
  return it->second;
}

void local_change(const std::string& tenant, const std::string& key, bool begins) {
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  c.generations[{tenant, key}] = c.next_generation++;
  if (auto t = c.tenants.find(tenant); t != c.tenants.end()) t->second.erase(key);
  if (begins) {
    c.pending[{tenant, key}] = Clock::now() + kPendingTtl;
  } else {
    c.pending.erase({tenant, key});
  }
}

}  // namespace

awaitable<TenantCache::Lookup> TenantCache::lookup(std::string tenant_id, std::string key) {
  Lookup out;
  bool answered = false;
  if (usable(client_)) {
    try {
      std::vector<std::string> args = script(kLookupScript, tenant_id, key, 2);
      args.push_back(core::uuid_v7());
      args.push_back(kGenerationTtl);
      Reply r = co_await client_->command(std::move(args));
      if (r.type == Reply::Type::kArray && r.elements.size() == 2 &&
          r.elements[1].type == Reply::Type::kString) {
        if (r.elements[0].type == Reply::Type::kString) out.value = std::move(r.elements[0].str);
        out.stamp = "r:" + r.elements[1].str;
        answered = true;
      }
    } catch (const Unavailable&) {
    }
  }
  if (!answered && !usable(client_)) {
    LocalCache& c = local();
    std::lock_guard lock(c.mutex);
    out.value = c.find(tenant_id, key);
    out.stamp = "l:" + std::to_string(local_generation(c, tenant_id, key));
  }
  // No stamp (Redis answered nonsense or failed mid-call): a miss that fills nothing.
  count(tenant_id, out.value.has_value());
  co_return out;
}

awaitable<void> TenantCache::fill(std::string tenant_id, std::string key, std::string value,
                                  std::string stamp, std::chrono::seconds ttl) {
  std::chrono::seconds lifetime = ttl_for(tenant_id, ttl);
  if (stamp.starts_with("r:")) {
    if (!usable(client_)) co_return;
    try {
      std::vector<std::string> args = script(kFillScript, tenant_id, key, 3);
      args.push_back(std::move(value));
      args.push_back(stamp.substr(2));
      args.push_back(std::to_string(lifetime.count()));
      co_await client_->command(std::move(args));
    } catch (const Unavailable&) {
    }
  } else if (stamp.starts_with("l:")) {
    LocalCache& c = local();
    std::lock_guard lock(c.mutex);
    auto g = c.generations.find({tenant_id, key});
    if (g == c.generations.end() || "l:" + std::to_string(g->second) != stamp) co_return;
    if (auto p = c.pending.find({tenant_id, key}); p != c.pending.end()) {
      if (p->second > Clock::now()) co_return;
      c.pending.erase(p);
    }
    c.store(tenant_id, key, std::move(value), lifetime);
  }
}

awaitable<void> TenantCache::change(std::string tenant_id, std::string key, bool begins) {
  if (usable(client_)) {
    try {
      std::vector<std::string> args = script(kChangeScript, tenant_id, key, 3);
      args.push_back(core::uuid_v7());
      args.push_back(kGenerationTtl);
      args.push_back(begins ? std::to_string(kPendingTtl.count()) : "0");
      co_await client_->command(std::move(args));
    } catch (const Unavailable&) {
      // Redis keeps what it had: its TTL bounds it (the caller's choice).
    }
  }
  local_change(tenant_id, key, begins);
}

awaitable<void> TenantCache::begin_change(std::string tenant_id, std::string key) {
  return change(std::move(tenant_id), std::move(key), true);
}

awaitable<void> TenantCache::end_change(std::string tenant_id, std::string key) {
  return change(std::move(tenant_id), std::move(key), false);
}

void TenantCache::forget_local(const std::string& key) {
  LocalCache& c = local();
  std::lock_guard lock(c.mutex);
  for (auto& [tenant, entries] : c.tenants) entries.erase(key);
  // New generations at the next lookup: every stamp taken before is refused.
  std::erase_if(c.generations, [&key](const auto& g) { return g.first.second == key; });
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
  out += "# HELP hsea_tenant_cache_hits_total Tenant cache look-ups that found an entry.\n";
  out += "# TYPE hsea_tenant_cache_hits_total counter\n";
  for (const auto& [tenant, n] : c.counts) {
    fmt::format_to(std::back_inserter(out), "hsea_tenant_cache_hits_total{{tenant=\"{}\"}} {}\n",
                   tenant, n.hits);
  }
  out += "# HELP hsea_tenant_cache_misses_total Tenant cache look-ups that found none.\n";
  out += "# TYPE hsea_tenant_cache_misses_total counter\n";
  for (const auto& [tenant, n] : c.counts) {
    fmt::format_to(std::back_inserter(out), "hsea_tenant_cache_misses_total{{tenant=\"{}\"}} {}\n",
                   tenant, n.misses);
  }
}

}  // namespace hsea::redis
