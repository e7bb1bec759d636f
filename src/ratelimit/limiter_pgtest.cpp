// The limiter against a real Redis (HSEA_TEST_REDIS_URL, set by scripts/test): the Lua script's
// lease grants (up_to) agree with the C++ step, and a thread's leases admit exactly what the
// bucket allows, counting X-RateLimit-Remaining down by one per request.
#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "ratelimit/internal.hpp"
#include "ratelimit/ratelimit.hpp"
#include "redis/client.hpp"

namespace hsea::ratelimit {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

struct Admissions {
  std::vector<Decision> decisions;
  bool done = false;
  std::exception_ptr error;
};

asio::awaitable<void> admit_many(redis::Client* client, std::string key, Rate rate, int n,
                                 Admissions* run) {
  for (int i = 0; i < n; ++i) run->decisions.push_back(co_await admit_on(client, key, rate));
}

TEST(RateLimitRedis, LeasesAdmitExactlyTheBucketAndTheScriptGrantsWhatFits) {
  const char* url = std::getenv("HSEA_TEST_REDIS_URL");
  if (url == nullptr || *url == '\0') GTEST_SKIP() << "HSEA_TEST_REDIS_URL is not set";
  asio::io_context io;
  redis::Client client(io, url, 2000ms);
  client.start();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!client.connected() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(10ms);
  }
  ASSERT_TRUE(client.connected());

  // 4 000 at once, one more an hour: leases of up to 10 (lease_max), and no refill meanwhile.
  Rate rate{.limit = 1, .period_seconds = 3600, .burst = 4000};
  ASSERT_EQ(lease_max(rate), 10);
  std::string key =
      bucket_key("test-" + std::to_string(std::random_device{}()), "api", "tenant", "leases");
  std::int64_t checks_before = counters().redis_checks.load();
  Admissions run;
  asio::co_spawn(io, admit_many(&client, key, rate, 4010, &run), [&](std::exception_ptr e) {
    run.error = e;
    run.done = true;
  });
  deadline = std::chrono::steady_clock::now() + 30s;
  while (!run.done && std::chrono::steady_clock::now() < deadline) io.run_one_for(10ms);
  ASSERT_TRUE(run.done);
  ASSERT_FALSE(run.error);
  ASSERT_EQ(run.decisions.size(), 4010u);
  std::int64_t checks = counters().redis_checks.load() - checks_before;

  for (int i = 0; i < 4000; ++i) {
    const Decision& d = run.decisions[i];
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 3999 - i) << i;  // the bucket's answer plus the lease's tokens
  }
  // The last lease asked for 10 when fewer were left: Redis granted what fitted, and after the
  // 4 000th nothing is admitted; the refusal is stated for one request (one interval), not ten.
  for (int i = 4000; i < 4010; ++i) {
    const Decision& d = run.decisions[i];
    EXPECT_FALSE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 0);
    EXPECT_GT(d.retry_after_us, 3590 * 1'000'000LL);
    EXPECT_LE(d.retry_after_us, 3600 * 1'000'000LL);
  }
  // Leases of 1, 2, 4, 8, then 10: about 400 checks for 4 000 requests, plus one per refusal.
  EXPECT_LT(checks, 4000 / 8 + 10);
  std::cout << checks << " Redis checks for 4 010 requests\n";
  client.stop();
  io.run_for(50ms);
}

}  // namespace
}  // namespace hsea::ratelimit
