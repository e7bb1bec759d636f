// The tenant cache against a real redis-server (HSEA_TEST_REDIS_URL) and without Redis.
#include "redis/tenant_cache.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "core/ids.hpp"
#include "redis/client.hpp"

namespace hsea::redis {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

template <typename T>
T run(asio::io_context& io, asio::awaitable<T> coroutine) {
  bool done = false;
  std::optional<T> value;
  std::exception_ptr error;
  asio::co_spawn(io, std::move(coroutine), [&](std::exception_ptr e, T v) {
    done = true;
    error = e;
    if (!e) value = std::move(v);
  });
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    if (io.stopped()) io.restart();
    io.run_one_for(5ms);
  }
  if (!done) throw std::runtime_error("did not finish");
  if (error) std::rethrow_exception(error);
  return std::move(*value);
}
void run(asio::io_context& io, asio::awaitable<void> coroutine) {
  auto wrap = [](asio::awaitable<void> c) -> asio::awaitable<int> {
    co_await std::move(c);
    co_return 0;
  };
  run<int>(io, wrap(std::move(coroutine)));
}

std::optional<std::chrono::seconds> configured_ttl(const std::string& tenant) {
  if (tenant == "00000000-0000-7000-8000-00000000000a") return std::chrono::seconds(1);
  return std::nullopt;
}

// Each tenant sees only its own entries; invalidating one tenant leaves the other's; hits and
// misses are counted per tenant.
void exercise(asio::io_context& io, TenantCache cache) {
  std::string a = core::uuid_v7(), b = core::uuid_v7();
  EXPECT_FALSE(run(io, cache.get(a, "plan")));
  run(io, cache.put(a, "plan", "pro"));
  run(io, cache.put(b, "plan", "free"));
  run(io, cache.put(a, "seats", "12"));
  EXPECT_EQ(run(io, cache.get(a, "plan")).value_or(""), "pro");
  EXPECT_EQ(run(io, cache.get(b, "plan")).value_or(""), "free");
  // A key that tries to reach into another tenant's namespace stays in its own.
  EXPECT_FALSE(run(io, cache.get(a, "}:plan")));
  EXPECT_EQ(TenantCache::key_of(a, "plan"), "cache:{t:" + a + "}:plan");

  run(io, cache.invalidate(a));
  EXPECT_FALSE(run(io, cache.get(a, "plan")));
  EXPECT_FALSE(run(io, cache.get(a, "seats")));
  EXPECT_EQ(run(io, cache.get(b, "plan")).value_or(""), "free");
  run(io, cache.erase(b, "plan"));
  EXPECT_FALSE(run(io, cache.get(b, "plan")));

  CacheCounts ca = cache_counts(a), cb = cache_counts(b);
  EXPECT_EQ(ca.hits, 1);
  EXPECT_EQ(ca.misses, 4);
  EXPECT_EQ(cb.hits, 2);
  EXPECT_EQ(cb.misses, 1);
  std::string metrics;
  render_cache_metrics(metrics);
  EXPECT_NE(metrics.find("hsea_tenant_cache_hits_total{tenant=\"" + a + "\"} 1"),
            std::string::npos);

  // The tenant's configured TTL applies when the call names none.
  set_ttl_source(configured_ttl);
  std::string short_lived = "00000000-0000-7000-8000-00000000000a";
  run(io, cache.put(short_lived, "k", "v"));
  run(io, cache.put(b, "k", "v"));
  EXPECT_TRUE(run(io, cache.get(short_lived, "k")));
  std::this_thread::sleep_for(2100ms);
  EXPECT_FALSE(run(io, cache.get(short_lived, "k")));
  EXPECT_TRUE(run(io, cache.get(b, "k")));  // the default TTL (300 s)
  set_ttl_source(nullptr);
  run(io, cache.invalidate(short_lived));
}

// lookup/fill against a writer's begin_change/end_change: a fill whose read may predate a
// change stores nothing, and no fill lands while a change is under way.
void exercise_changes(asio::io_context& io, TenantCache cache, TenantCache other_node) {
  std::string a = core::uuid_v7(), b = core::uuid_v7();
  const std::string k = "entitlement";
  TenantCache::Lookup first = run(io, cache.lookup(a, k));
  EXPECT_FALSE(first.value);
  ASSERT_FALSE(first.stamp.empty());
  run(io, cache.fill(a, k, "starter", first.stamp, 60s));
  EXPECT_EQ(run(io, other_node.lookup(a, k)).value.value_or(""), "starter");
  TenantCache::Lookup tb = run(io, cache.lookup(b, k));
  run(io, cache.fill(b, k, "free", tb.stamp, 60s));

  // A reader misses and reads the database (old data) ...
  run(io, cache.begin_change(a, k));
  TenantCache::Lookup during = run(io, other_node.lookup(a, k));
  EXPECT_FALSE(during.value);  // the change dropped the entry before its commit
  run(io, other_node.fill(a, k, "starter (read before the commit)", during.stamp, 60s));
  EXPECT_FALSE(run(io, cache.lookup(a, k)).value);  // held off while the change is under way
  run(io, cache.end_change(a, k));
  // ... and offers it after the commit: refused, its stamp predates the change.
  run(io, other_node.fill(a, k, "starter (read before the commit)", during.stamp, 60s));
  run(io, cache.fill(a, k, "starter (stamped first)", first.stamp, 60s));
  TenantCache::Lookup after = run(io, other_node.lookup(a, k));
  EXPECT_FALSE(after.value);
  // A read after the change fills as usual.
  run(io, other_node.fill(a, k, "pro", after.stamp, 60s));
  EXPECT_EQ(run(io, cache.lookup(a, k)).value.value_or(""), "pro");
  // The other tenant never noticed.
  EXPECT_EQ(run(io, cache.lookup(b, k)).value.value_or(""), "free");
  run(io, cache.invalidate(a));
  run(io, cache.invalidate(b));
}

TEST(TenantCache, FillsNeverOutliveAChangeWithoutRedis) {
  asio::io_context io;
  exercise_changes(io, TenantCache(nullptr), TenantCache(nullptr));
  // A process told of a change another way forgets its entries and refuses older fills.
  TenantCache cache(nullptr);
  std::string t = core::uuid_v7();
  TenantCache::Lookup l = run(io, cache.lookup(t, "k"));
  run(io, cache.fill(t, "k", "v", l.stamp, 60s));
  TenantCache::Lookup again = run(io, cache.lookup(t, "k"));
  ASSERT_TRUE(again.value);
  TenantCache::forget_local("k");
  EXPECT_FALSE(run(io, cache.lookup(t, "k")).value);
  run(io, cache.fill(t, "k", "stale", again.stamp, 60s));
  EXPECT_FALSE(run(io, cache.lookup(t, "k")).value);
}

TEST(TenantCache, FillsNeverOutliveAChangeThroughRedis) {
  const char* url = std::getenv("HSEA_TEST_REDIS_URL");
  if (url == nullptr) GTEST_SKIP() << "HSEA_TEST_REDIS_URL is not set";
  asio::io_context io;
  Client one(io, url, std::chrono::milliseconds(1000)),
      two(io, url, std::chrono::milliseconds(1000));
  one.start();
  two.start();
  for (int i = 0; i < 200 && !(one.connected() && two.connected()); ++i) io.run_one_for(10ms);
  ASSERT_TRUE(one.connected() && two.connected());
  exercise_changes(io, TenantCache(&one), TenantCache(&two));
  // Keys stay in the tenant's slot: the generation sits beside the entry.
  std::string t = core::uuid_v7();
  TenantCache cache(&one);
  run(io, cache.lookup(t, "k"));
  std::vector<std::string> exists{"EXISTS", TenantCache::key_of(t, "k") + "#gen"};
  EXPECT_EQ(run(io, one.command(std::move(exists))).integer, 1);
  run(io, cache.invalidate(t));
  two.stop();
  one.stop();
  for (int i = 0; i < 20; ++i) io.run_one_for(5ms);
}

TEST(TenantCache, InProcessWithoutRedis) {
  asio::io_context io;
  exercise(io, TenantCache(nullptr));
}

TEST(TenantCache, SharedThroughRedis) {
  const char* url = std::getenv("HSEA_TEST_REDIS_URL");
  if (url == nullptr) GTEST_SKIP() << "HSEA_TEST_REDIS_URL is not set";
  asio::io_context io;
  Client client(io, url, std::chrono::milliseconds(1000));
  client.start();
  for (int i = 0; i < 200 && !client.connected(); ++i) io.run_one_for(10ms);
  ASSERT_TRUE(client.connected());
  exercise(io, TenantCache(&client));
  // Another client (another node) sees the same entries.
  std::string t = core::uuid_v7();
  TenantCache mine(&client);
  run(io, mine.put(t, "k", "shared"));
  Client other(io, url, std::chrono::milliseconds(1000));
  other.start();
  for (int i = 0; i < 200 && !other.connected(); ++i) io.run_one_for(10ms);
  TenantCache theirs(&other);
  EXPECT_EQ(run(io, theirs.get(t, "k")).value_or(""), "shared");
  run(io, theirs.invalidate(t));
  EXPECT_FALSE(run(io, mine.get(t, "k")));
  other.stop();
  client.stop();
  for (int i = 0; i < 20; ++i) io.run_one_for(5ms);
}

}  // namespace
}  // namespace hsea::redis
