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
