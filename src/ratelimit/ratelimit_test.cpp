#include <gtest/gtest.h>

#include "ratelimit/gcra.hpp"
#include "ratelimit/rules.hpp"

namespace hsea::ratelimit {
namespace {

constexpr std::int64_t kSecond = 1'000'000;

TEST(Gcra, AdmitsTheBurstAtOnceThenOneInterval) {
  LocalTable table;
  Rate rate{.limit = 10, .period_seconds = 1, .burst = 5};  // 100 ms apart, 5 at once
  std::int64_t t = 1'000 * kSecond;
  for (int i = 0; i < 5; ++i) {
    Decision d = table.check("k", rate, 1, false, t);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 4 - i);
  }
  Decision refused = table.check("k", rate, 1, false, t);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.remaining, 0);
  EXPECT_EQ(refused.retry_after_us, kSecond / 10);
  EXPECT_EQ(refused.reset_us, kSecond / 2);  // full again after 5 intervals
  // A refusal takes nothing: after one interval exactly one more fits.
  EXPECT_TRUE(table.check("k", rate, 1, false, t + kSecond / 10).allowed);
  EXPECT_FALSE(table.check("k", rate, 1, false, t + kSecond / 10).allowed);
  // Another key is another bucket.
  EXPECT_TRUE(table.check("other", rate, 1, false, t).allowed);
}

TEST(Gcra, OverAWindowAdmitsRateTimesWindowPlusBurst) {
  LocalTable table;
  Rate rate{.limit = 50, .period_seconds = 1, .burst = 20};
  std::int64_t start = 5'000 * kSecond;
  int allowed = 0;
  for (std::int64_t t = start; t < start + 10 * kSecond; t += 1000) {  // 1000 tries a second
    if (table.check("k", rate, 1, false, t).allowed) ++allowed;
  }
  EXPECT_GE(allowed, 50 * 10 + 20 - 1);
  EXPECT_LE(allowed, 50 * 10 + 20);
}

TEST(Gcra, PeekAsksWithoutTakingAndCostTakesSeveral) {
  LocalTable table;
  Rate rate{.limit = 3, .period_seconds = 3600, .burst = 3};
  std::int64_t t = 10 * kSecond;
  EXPECT_TRUE(table.check("k", rate, 1, true, t).allowed);
  EXPECT_TRUE(table.check("k", rate, 2, false, t).allowed);
  Decision peek = table.check("k", rate, 1, true, t);
  EXPECT_TRUE(peek.allowed);
  EXPECT_EQ(peek.remaining, 1);
  EXPECT_TRUE(table.check("k", rate, 1, false, t).allowed);
  Decision refused = table.check("k", rate, 1, true, t);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after_us, 1200 * kSecond);  // one failure more per 20 minutes
}

TEST(Gcra, FullBucketsAreForgotten) {
  LocalTable table;
  Rate rate{.limit = 1000, .period_seconds = 1, .burst = 1};
  for (int i = 0; i < 100000; ++i) table.check("k" + std::to_string(i), rate, 1, false, i);
  // Every 4096th step of a shard drops its buckets that are full again (their TAT passed).
  EXPECT_LT(table.size(), 50000u);
}

TEST(RateLimitRules, ResolveInTheDocumentedOrder) {
  Rate fallback{100, 1, 200};
  Rate plan{500, 1, 1000};
  Rate override_rate{7, 1, 7};
  Limit api = default_rule();
  // The default rule without plan or override: the settings' default.
  Resolved r = resolve(api, std::nullopt, fallback, std::nullopt);
  EXPECT_EQ(r.rule, "api");
  EXPECT_EQ(r.source, "default");
  EXPECT_EQ(r.rate, fallback);
  // The plan's rate replaces the default...
  r = resolve(api, plan, fallback, std::nullopt);
  EXPECT_EQ(r.source, "plan");
  EXPECT_EQ(r.rate, plan);
  // ...and the tenant's override replaces the plan.
  r = resolve(api, plan, fallback, override_rate);
  EXPECT_EQ(r.source, "override");
  EXPECT_EQ(r.rate, override_rate);
  // A route's own rate is not the plan's to change, but an override still is.
  Limit exports{.rule = "exports", .per = Per::kPrincipal, .limit = 2, .period_seconds = 60};
  r = resolve(exports, plan, fallback, std::nullopt);
  EXPECT_EQ(r.source, "route");
  EXPECT_EQ(r.rate, (Rate{2, 60, 0}));
  EXPECT_EQ(r.per, Per::kPrincipal);
  r = resolve(exports, plan, fallback, override_rate);
  EXPECT_EQ(r.source, "override");
  EXPECT_EQ(r.per, Per::kPrincipal);
}

TEST(RateLimitRules, KeysCarryTheTenantAsAHashTag) {
  EXPECT_EQ(bucket_key("t1", "api", "tenant", "t1"), "rl:{t:t1}:api:tenant:t1");
  EXPECT_EQ(bucket_key("t1", "exports", "user", "u9"), "rl:{t:t1}:exports:user:u9");
  EXPECT_EQ(bucket_key("", "login", "ip", "2001:db8::/64"), "rl:{ip:2001:db8::/64}:login");
}

TEST(RateLimitRules, IPv6CountsPerSlash64) {
  EXPECT_EQ(client_key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
  EXPECT_EQ(client_key("2001:DB8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
  EXPECT_EQ(client_key("::ffff:198.51.100.7"), "198.51.100.7");
  EXPECT_EQ(client_key("198.51.100.7"), "198.51.100.7");
}

TEST(AnomalyDetector, FlagsARateThatLeavesItsOwnBaseline) {
  AnomalyDetector d;
  // A steady tenant around 100 requests per interval, with some noise, is never flagged.
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(d.observe(100 + (i % 5) * 4 - 8)) << i;
  EXPECT_NEAR(d.mean(), 100, 5);
  EXPECT_TRUE(d.observe(1000));  // a tenfold jump
  AnomalyDetector drop;
  for (int i = 0; i < 50; ++i) drop.observe(100 + (i % 5) * 4 - 8);
  EXPECT_TRUE(drop.observe(5));  // and a collapse
  // Another tenant's baseline is its own: 1000 is normal for it.
  AnomalyDetector big;
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(big.observe(1000 + (i % 3) * 20));
  EXPECT_FALSE(big.observe(1030));
}

TEST(AnomalyDetector, QuietTenantsAndTheWarmupAreNotFlagged) {
  AnomalyDetector d;
  EXPECT_FALSE(d.observe(1));
  EXPECT_FALSE(d.observe(500));  // still warming up
  AnomalyDetector quiet;
  for (int i = 0; i < 20; ++i) quiet.observe(1);
  EXPECT_FALSE(quiet.observe(8));  // below min_rate: not worth an alert
}

TEST(AnomalyDetector, ALastingChangeBecomesTheNewBaseline) {
  AnomalyDetector d;
  for (int i = 0; i < 20; ++i) d.observe(100);
  int flagged = 0;
  for (int i = 0; i < 200; ++i) flagged += d.observe(400) ? 1 : 0;
  EXPECT_GT(flagged, 0);
  EXPECT_LT(flagged, 60);
  EXPECT_FALSE(d.observe(400));
}

}  // namespace
}  // namespace hsea::ratelimit
