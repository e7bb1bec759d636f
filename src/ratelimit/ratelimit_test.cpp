#include <gtest/gtest.h>

#include <array>
#include <iostream>

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

TEST(Gcra, UpToTakesWhatFitsAndRefusesOnlyWhenNotOneDoes) {
  Rate rate{.limit = 10, .period_seconds = 1, .burst = 5};  // 100 ms apart, 5 at once
  std::int64_t t = 100 * kSecond;
  Step a = gcra(t, std::nullopt, rate, 3, false, true);
  EXPECT_TRUE(a.decision.allowed);
  EXPECT_EQ(a.decision.granted, 3);
  EXPECT_EQ(a.decision.remaining, 2);
  Step b = gcra(t, a.store_tat_us, rate, 3, false, true);  // only two fit
  EXPECT_TRUE(b.decision.allowed);
  EXPECT_EQ(b.decision.granted, 2);
  EXPECT_EQ(b.decision.remaining, 0);
  Step c = gcra(t, b.store_tat_us, rate, 3, false, true);
  EXPECT_FALSE(c.decision.allowed);
  EXPECT_EQ(c.decision.granted, 0);
  EXPECT_EQ(c.decision.retry_after_us, kSecond / 10);  // stated for one request, not three
  EXPECT_FALSE(c.store_tat_us);
  // Without up_to, a cost that does not fit whole is refused.
  Step d = gcra(t + kSecond / 10, b.store_tat_us, rate, 3, false, false);
  EXPECT_FALSE(d.decision.allowed);
}

TEST(Leases, SmallRatesGetNoLeaseAndLargeOnesAtMostAQuarterPercent) {
  EXPECT_EQ(lease_max(Rate{.limit = 50, .period_seconds = 1, .burst = 50}), 1);
  EXPECT_EQ(lease_max(Rate{.limit = 100, .period_seconds = 3600, .burst = 100}), 1);
  EXPECT_EQ(lease_max(Rate{.limit = 2000, .period_seconds = 1, .burst = 2000}), 10);
  EXPECT_EQ(lease_max(Rate{.limit = 100, .period_seconds = 1, .burst = 2000}), 5);
  EXPECT_EQ(lease_max(Rate{.limit = 1'000'000'000, .period_seconds = 1, .burst = 1}), kLeaseMax);
}

TEST(Leases, AThreadAdmitsFromItsLeaseAndTheSizeFollowsItsDemand) {
  Leases leases;
  Rate rate{.limit = 100'000, .period_seconds = 1, .burst = 100'000};  // lease_max 500
  std::int64_t t = 50 * kSecond;
  EXPECT_FALSE(leases.take("k", t));
  EXPECT_EQ(leases.ask("k", rate, t), 1);  // the first lease is one request: exact
  EXPECT_EQ(leases.ask("k", rate, t), 0);  // while it is asked, others check alone
  Decision d = leases.granted("k", rate, Decision{.remaining = 99'999, .granted = 1}, t);
  EXPECT_EQ(d.remaining, 99'999);
  EXPECT_FALSE(leases.take("k", t));  // used up before it expired: the next is twice as big
  EXPECT_EQ(leases.ask("k", rate, t), 2);
  d = leases.granted("k", rate, Decision{.remaining = 99'997, .reset_us = 30, .granted = 2}, t);
  EXPECT_EQ(d.remaining, 99'998);  // the bucket's answer and the lease's token
  EXPECT_EQ(d.granted, 1);
  std::optional<Decision> from_lease = leases.take("k", t + 10);
  ASSERT_TRUE(from_lease);
  EXPECT_TRUE(from_lease->allowed);
  EXPECT_EQ(from_lease->remaining, 99'997);
  EXPECT_EQ(from_lease->reset_us, 20);
  EXPECT_FALSE(leases.take("k", t + 10));
  EXPECT_EQ(leases.ask("k", rate, t + 20), 4);
  leases.granted("k", rate, Decision{.remaining = 99'990, .granted = 4}, t + 20);
  EXPECT_TRUE(leases.take("k", t + 30));  // one of three left used
  // Expired with one left: the next lease is what was used (two requests), and the expired
  // token is not admitted.
  EXPECT_FALSE(leases.take("k", t + 20 + kLeaseMinUs));
  EXPECT_EQ(leases.ask("k", rate, t + 20 + kLeaseMinUs), 2);
  // A bucket that grants fewer than asked leases what it granted; a refusal leases nothing.
  leases.granted("k", rate, Decision{.remaining = 0, .granted = 1}, t + kSecond);
  EXPECT_FALSE(leases.take("k", t + kSecond));
  EXPECT_EQ(leases.ask("k", rate, t + kSecond), 4);
  Decision refused{.allowed = false, .retry_after_us = 10, .reset_us = 500};
  EXPECT_FALSE(leases.granted("k", rate, refused, t + kSecond).allowed);
  // Until one request fits, this thread refuses without asking (nothing can fit before then).
  std::optional<Decision> again = leases.take("k", t + kSecond + 4);
  ASSERT_TRUE(again);
  EXPECT_FALSE(again->allowed);
  EXPECT_EQ(again->remaining, 0);
  EXPECT_EQ(again->retry_after_us, 6);
  EXPECT_EQ(again->reset_us, 496);
  EXPECT_FALSE(leases.take("k", t + kSecond + 10));
  // Redis failed: the lease is asked again by the next request.
  EXPECT_EQ(leases.ask("k", rate, t + kSecond + 10), 4);
  leases.failed("k");
  EXPECT_EQ(leases.ask("k", rate, t + kSecond + 10), 4);
  // A long refusal (an hour's rate) is remembered for kLeaseMaxUs only: a restarted Redis (a
  // full bucket again) is asked soon.
  leases.granted("k", rate, Decision{.allowed = false, .retry_after_us = 3600 * kSecond},
                 t + 2 * kSecond);
  EXPECT_TRUE(leases.take("k", t + 2 * kSecond + kLeaseMaxUs - 1));
  EXPECT_FALSE(leases.take("k", t + 2 * kSecond + kLeaseMaxUs));
}

TEST(Leases, NeverMoreThanTheBucketAllowsAndWithinALeasePerThreadOfIt) {
  // Four threads (two nodes of two) share one bucket and hammer it for ten seconds.
  Rate rate{.limit = 20'000, .period_seconds = 1, .burst = 20'000};  // lease_max 100
  std::optional<std::int64_t> tat;
  std::array<Leases, 4> threads;
  std::int64_t start = 1'000 * kSecond, admitted = 0, burst_round_trips = 0;
  int i = 0;
  for (std::int64_t t = start; t < start + 10 * kSecond; t += 5, ++i) {  // 200 000 a second
    Leases& leases = threads[i % 4];
    if (std::optional<Decision> d = leases.take("k", t)) {
      if (d->allowed) ++admitted;
      continue;
    }
    std::int64_t k = leases.ask("k", rate, t);
    if (t < start + kSecond / 10) ++burst_round_trips;  // the burst lasts ~111 ms here
    Step step = gcra(t, tat, rate, static_cast<int>(std::max<std::int64_t>(k, 1)), false, k > 0);
    if (step.store_tat_us) tat = step.store_tat_us;
    Decision d = k > 0 ? leases.granted("k", rate, step.decision, t) : step.decision;
    if (d.allowed) ++admitted;
  }
  double bound = 20'000 + 20'000 * 10.0;
  EXPECT_LE(admitted, bound);
  EXPECT_GE(admitted, bound * 0.99);
  // While the bucket had tokens, leases saved most round trips (20 000 requests in 100 ms);
  // once it is empty every grant is the one token that refilled, as without leases.
  EXPECT_LT(burst_round_trips, 20'000 / 20);
  std::cout << admitted << " admitted (bound " << bound << "), " << burst_round_trips
            << " round trips in the first 100 ms\n";
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
