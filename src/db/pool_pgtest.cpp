#include <gtest/gtest.h>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <future>
#include <thread>
#include <variant>

#include "core/ids.hpp"
#include "db/db.hpp"
#include "testkit/async.hpp"
#include "testkit/testkit.hpp"

namespace hsea::db {
namespace {

using boost::asio::awaitable;
using testkit::run_sync;

constexpr Query kAdd{"test_add", "SELECT $1::int + $2::int AS sum"};
constexpr Query kSleep{"test_sleep", "SELECT pg_sleep($1::float8)"};
constexpr Query kCurrentTenant{"test_current_tenant",
                               "SELECT current_setting('app.tenant_id', true) AS tenant"};
constexpr Query kInsertTenant{"test_insert_tenant",
                              "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $3)"};
constexpr Query kCountTenants{"test_count_tenants", "SELECT count(*) AS n FROM tenants"};
constexpr Query kEcho{"test_echo", "SELECT $1::text AS v"};
constexpr Query kBackendPid{"test_backend_pid", "SELECT pg_backend_pid() AS pid"};

class PoolTest : public ::testing::Test {
 protected:
  PoolOptions options(int size = 2) {
    return PoolOptions{.url = db_.app_url(),
                       .size = size,
                       .acquire_timeout = std::chrono::milliseconds(300),
                       .connect_timeout = std::chrono::milliseconds(3000),
                       .statement_timeout = std::chrono::milliseconds(2000)};
  }
  testkit::TestDatabase db_;
  boost::asio::io_context io_;
};

TEST_F(PoolTest, RunsPreparedStatementsWithParameters) {
  Pool pool(io_, options());
  auto task = [](Pool& p) -> awaitable<std::int64_t> {
    Result r = co_await p.query(kAdd, params(2, 40));
    Result again = co_await p.query(kAdd, params(1, 1));  // reuses the prepared statement
    co_return r.get_int(0, "sum") + again.get_int(0, "sum");
  };
  EXPECT_EQ(run_sync(io_, task(pool)), 44);
  EXPECT_EQ(pool.stats().connects_total, 1u);
}

TEST_F(PoolTest, NullAndTextParameters) {
  Pool pool(io_, options());
  auto task = [](Pool& p) -> awaitable<std::string> {
    Result r = co_await p.query(kEcho, params(std::optional<std::string>()));
    EXPECT_TRUE(r.is_null(0, 0));
    Result s = co_await p.query(kEcho, params("it's \"quoted\"; DROP TABLE tenants"));
    co_return std::string(s.get(0, "v"));
  };
  EXPECT_EQ(run_sync(io_, task(pool)), "it's \"quoted\"; DROP TABLE tenants");
}

TEST_F(PoolTest, TenantQuerySetsContextOnlyForItsTransaction) {
  Pool pool(io_, options(1));
  auto task = [](Pool& p) -> awaitable<std::pair<std::string, std::string>> {
    Result inside = co_await p.tenant_query("0190f5d2-7c3a-7b8e-9a01-23456789abcd", kCurrentTenant);
    Result after = co_await p.query(kCurrentTenant);  // same single connection
    co_return std::pair{std::string(inside.get(0, "tenant")), std::string(after.get(0, "tenant"))};
  };
  auto [inside, after] = run_sync(io_, task(pool));
  EXPECT_EQ(inside, "0190f5d2-7c3a-7b8e-9a01-23456789abcd");
  EXPECT_EQ(after, "");
}

TEST_F(PoolTest, RowLevelSecurityScopesEveryQueryToTheTenant) {
  std::string a = core::uuid_v7(), b = core::uuid_v7();
  testkit::sql(db_.admin_url(),
               "INSERT INTO tenants (id, slug, name) VALUES ($1,'a','A'),($2,'b','B')", {a, b});
  Pool pool(io_, options());
  auto task = [](Pool& p, std::string a) -> awaitable<std::pair<std::int64_t, std::int64_t>> {
    Result scoped = co_await p.tenant_query(a, kCountTenants);  // no WHERE clause
    Result none = co_await p.query(kCountTenants);              // no tenant set
    co_return std::pair{scoped.get_int(0, "n"), none.get_int(0, "n")};
  };
  auto [scoped, none] = run_sync(io_, task(pool, a));
  EXPECT_EQ(scoped, 1);
  EXPECT_EQ(none, 0);
}

TEST_F(PoolTest, WithCheckRefusesWritesForAnotherTenant) {
  Pool pool(io_, options(1));
  auto task = [](Pool& p) -> awaitable<std::pair<std::string, std::string>> {
    std::string sqlstate = "no error";
    try {
      co_await p.tenant_query(core::uuid_v7(), kInsertTenant,
                              params(core::uuid_v7(), "other", "Other"));
    } catch (const Error& e) {
      sqlstate = e.sqlstate();
    }
    // The failed statement's implicit transaction ended with its scope: the same (single)
    // connection serves the next caller without a tenant.
    Result after = co_await p.query(kCurrentTenant);
    co_return std::pair{sqlstate, std::string(after.get(0, "tenant"))};
  };
  auto [sqlstate, after] = run_sync(io_, task(pool));
  EXPECT_EQ(sqlstate, "42501");
  EXPECT_EQ(after, "");
  EXPECT_EQ(testkit::sql(db_.admin_url(), "SELECT count(*) FROM tenants")[0][0], "0");
}

TEST_F(PoolTest, TenantScopedStatementIsOneRoundTrip) {
  Pool pool(io_, options(1));
  auto warm = [](Pool& p) -> awaitable<void> { co_await p.query(kAdd, params(1, 1)); };
  run_sync(io_, warm(pool));
  auto before = pool.stats().round_trips_total;
  auto scoped = [](Pool& p) -> awaitable<void> {
    // set_config, PREPARE (first use) and the statement, one implicit transaction: one wait.
    co_await p.tenant_query(core::uuid_v7(), kCountTenants);
  };
  run_sync(io_, scoped(pool));
  EXPECT_EQ(pool.stats().round_trips_total - before, 1u);
  auto tx = [](Pool& p) -> awaitable<void> {
    Transaction t = co_await p.begin(db::tenant_scope(core::uuid_v7()));
    co_await t.exec(kCountTenants);         // BEGIN + set_config + statement
    co_await t.exec_commit(kCountTenants);  // statement + COMMIT
  };
  before = pool.stats().round_trips_total;
  run_sync(io_, tx(pool));
  EXPECT_EQ(pool.stats().round_trips_total - before, 2u);
}

TEST_F(PoolTest, TransactionCommitsAndRollsBack) {
  Pool pool(io_, options(1));
  std::string committed = core::uuid_v7(), abandoned = core::uuid_v7();
  auto task = [](Pool& p, std::string committed, std::string abandoned) -> awaitable<void> {
    {
      Transaction tx = co_await p.begin(db::tenant_scope(committed));
      co_await tx.exec(kInsertTenant, params(committed, "kept", "Kept"));
      Result n = co_await tx.exec(kCountTenants);
      EXPECT_EQ(n.get_int(0, "n"), 1);
      co_await tx.commit();
    }
    {
      Transaction tx = co_await p.begin(db::tenant_scope(abandoned));
      co_await tx.exec(kInsertTenant, params(abandoned, "gone", "Gone"));
      // destroyed without commit: rolled back in the connection's next pipeline
    }
    Result n = co_await p.tenant_query(abandoned, kCountTenants);
    EXPECT_EQ(n.get_int(0, "n"), 0);
  };
  run_sync(io_, task(pool, committed, abandoned));
  EXPECT_EQ(testkit::sql(db_.admin_url(), "SELECT slug FROM tenants")[0][0], "kept");
}

TEST_F(PoolTest, ErrorsCarrySqlStateAndLeaveTheConnectionUsable) {
  Pool pool(io_, options(1));
  std::string id = core::uuid_v7();
  auto task = [](Pool& p, std::string id) -> awaitable<std::int64_t> {
    co_await p.tenant_query(id, kInsertTenant, params(id, "dup", "Dup"));
    std::string state;
    try {
      co_await p.tenant_query(id, kInsertTenant, params(id, "dup", "Dup"));
    } catch (const Error& e) {
      state = e.sqlstate();
    }
    EXPECT_EQ(state, "23505");
    {
      Transaction tx = co_await p.begin(db::tenant_scope(id));
      try {
        co_await tx.exec(kInsertTenant, params(id, "dup", "Dup"));
      } catch (const Error& e) {
        state = e.sqlstate();
      }
      EXPECT_EQ(state, "23505");
    }
    Result r = co_await p.query(kAdd, params(1, 2));
    co_return r.get_int(0, "sum");
  };
  EXPECT_EQ(run_sync(io_, task(pool, id)), 3);
  EXPECT_EQ(pool.stats().connects_total, 1u);  // the same connection served everything
}

TEST_F(PoolTest, AcquireTimesOutWhenExhausted) {
  Pool pool(io_, options(1));
  auto slow = [](Pool& p) -> awaitable<void> { co_await p.query(kSleep, params("0.8")); };
  auto fast = [](Pool& p) -> awaitable<std::string> {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(boost::asio::use_awaitable);
    try {
      co_await p.query(kAdd, params(1, 1));
    } catch (const Error& e) {
      co_return e.sqlstate();
    }
    co_return "acquired";
  };
  auto f1 = boost::asio::co_spawn(io_, slow(pool), boost::asio::use_future);
  auto f2 = boost::asio::co_spawn(io_, fast(pool), boost::asio::use_future);
  io_.run();
  f1.get();
  EXPECT_EQ(f2.get(), "53300");
  EXPECT_EQ(pool.stats().wait_timeouts_total, 1u);
}

TEST_F(PoolTest, StatementTimeoutIsEnforced) {
  auto opts = options(1);
  opts.statement_timeout = std::chrono::milliseconds(200);
  Pool pool(io_, opts);
  auto task = [](Pool& p) -> awaitable<std::string> {
    try {
      co_await p.query(kSleep, params("3"));
    } catch (const Error& e) {
      co_return e.sqlstate();
    }
    co_return "finished";
  };
  EXPECT_EQ(run_sync(io_, task(pool)), "57014");
}

// The stale query of the cancellation test. nextval is never rolled back, so the sequence
// counts, on the server's side, every one of these statements the server received and ran:
// each had a reply on its way back to the connection.
constexpr Query kProbe{"test_cancel_probe",
                       "SELECT nextval('cancel_probe') AS seen, pg_sleep($1::float8) AS slept, "
                       "$2::text AS v"};

// What became of the stale queries: cancelled after they were sent and before their reply was
// read (the pool had a round trip under way and dropped the connection), finished before the
// cancellation took effect (reply read, connection kept), or cancelled before anything was sent.
struct CancelTally {
  int mid_flight = 0;
  int finished = 0;
  int before_send = 0;
  std::vector<std::string> wrong;  // replies that went to a caller they did not belong to
};

awaitable<CancelTally> cancel_mid_flight(Pool& p, int rounds) {
  using namespace boost::asio::experimental::awaitable_operators;
  CancelTally tally;
  // Connected, both statements prepared: every round races only the reply.
  co_await p.query(kProbe, params("0", "warm-up"));
  co_await p.query(kEcho, params("warm-up"));
  for (int i = 0; i < rounds; ++i) {
    std::string stale = "stale-" + std::to_string(i), fresh = "fresh-" + std::to_string(i);
    // The server holds the reply for 0-20 ms; the cancellation comes 1-12 ms after the query
    // was sent: always mid-flight for the long sleeps, on either side of the reply for the
    // short ones.
    static constexpr const char* kSleeps[] = {"0", "0.002", "0.005", "0.01", "0.02"};
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(1 + (i * 7) % 12));
    PoolStats before = p.stats();
    auto outcome = co_await (p.query(kProbe, params(kSleeps[i % 5], stale)) ||
                             t.async_wait(boost::asio::use_awaitable));
    // The next caller on the pool's one connection gets its own reply, never the stale one
    // (nor the stale one's sync, which surfaces as an error).
    std::string got;
    try {
      Result next = co_await p.query(kEcho, params(fresh));
      got = next.get(0, "v");
    } catch (const std::exception& e) {
      got = std::string("an error: ") + e.what();
    }
    PoolStats after = p.stats();
    // Each one-statement call that reached the server is counted once its reply is read: the
    // stale query was sent when two were carried. A reply read for a caller that had left is
    // counted abandoned (the connection is kept: the reply is read and dropped in order).
    bool sent = after.batched_total - before.batched_total >= 2;
    bool abandoned = after.abandoned_total > before.abandoned_total;
    if (outcome.index() == 0) {
      ++tally.finished;
      std::string v(std::get<0>(outcome).get(0, "v"));
      if (v != stale) tally.wrong.push_back("round " + std::to_string(i) + ": own query got " + v);
    } else if (sent && abandoned) {
      ++tally.mid_flight;
    } else if (sent) {
      ++tally.finished;  // the reply was read; only the timer's completion came first
    } else {
      ++tally.before_send;
    }
    if (got != fresh) {
      tally.wrong.push_back("round " + std::to_string(i) + ": next caller got " + got);
      if (got.starts_with("an error")) break;  // the connection is lost in replies not its own
    }
  }
  co_return tally;
}

TEST_F(PoolTest, CancelledQueryNeverLeaksItsReplyToTheNextCaller) {
  testkit::sql(db_.admin_url(),
               "CREATE SEQUENCE cancel_probe; "
               "GRANT USAGE ON SEQUENCE cancel_probe TO hsea_app_privileges");
  constexpr int kRounds = 40;
  Pool pool(io_, options(1));  // one connection: a leaked reply can only reach the next caller
  CancelTally tally = run_sync(io_, cancel_mid_flight(pool, kRounds));
  for (const auto& w : tally.wrong) ADD_FAILURE() << w;
  EXPECT_EQ(tally.mid_flight + tally.finished + tally.before_send, kRounds);
  // A run without a mid-flight cancellation proves nothing about leaks.
  EXPECT_GE(tally.mid_flight, 1) << "finished " << tally.finished << ", cancelled before send "
                                 << tally.before_send;

  // The server side agrees: every query counted as sent reached the server and ran, so each
  // mid-flight cancellation really left a reply behind. Dropped backends finish their sleep
  // first; wait until only the pool's own connection is left.
  std::string app_role = testkit::sql(db_.app_url(), "SELECT current_user")[0][0];
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (testkit::sql(db_.admin_url(),
                      "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND usename = $2",
                      {db_.name(), app_role})[0][0] != "1" &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto seen = testkit::sql(
      db_.admin_url(), "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM cancel_probe");
  EXPECT_EQ(seen[0][0], std::to_string(1 + tally.mid_flight + tally.finished));  // 1: warm-up
  std::printf("cancellation rounds: %d mid-flight, %d finished, %d before send\n", tally.mid_flight,
              tally.finished, tally.before_send);
}

// Concurrent one-statement calls share round trips, yet each runs in its own implicit
// transaction: its own tenant setting, its own error, its own reply.
TEST_F(PoolTest, ConcurrentOneStatementCallsShareRoundTripsButNotScopesOrErrors) {
  Pool pool(io_, options(1));
  constexpr int kCalls = 60;
  std::vector<std::string> tenants;
  for (int i = 0; i < kCalls; ++i) tenants.push_back(core::uuid_v7());
  std::vector<std::string> got(kCalls);
  auto call = [](Pool& p, int i, std::string tenant, std::string& out) -> awaitable<void> {
    try {
      if (i % 7 == 3) {
        co_await p.tenant_query(tenant, kAdd, params("not a number", 1));
        out = "no error";
      } else {
        Result r = co_await p.tenant_query(tenant, kCurrentTenant);
        out = std::string(r.get(0, "tenant"));
      }
    } catch (const Error& e) {
      out = "error " + e.sqlstate();
    }
  };
  std::vector<std::future<void>> done;
  for (int i = 0; i < kCalls; ++i) {
    done.push_back(
        boost::asio::co_spawn(io_, call(pool, i, tenants[i], got[i]), boost::asio::use_future));
  }
  io_.run();
  for (auto& f : done) f.get();  // rethrows what a call did not catch
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_EQ(got[i], i % 7 == 3 ? "error 22P02" : tenants[i]) << "call " << i;
  }
  PoolStats s = pool.stats();
  EXPECT_EQ(s.batched_total, static_cast<std::uint64_t>(kCalls));
  EXPECT_LT(s.batches_total, static_cast<std::uint64_t>(kCalls) / 4) << "calls were not batched";
  EXPECT_EQ(s.connects_total, 1u);
  EXPECT_EQ(s.broken_total, 0u);
}

// A slow statement sent alone holds no one-statement call behind it.
TEST_F(PoolTest, ASoloStatementRunsBesideTheBatchesNotInThem) {
  Pool pool(io_, options(2));
  std::vector<std::string> finished;
  auto slow = [](Pool& p, std::vector<std::string>& order) -> awaitable<void> {
    co_await p.solo_query(kSleep, params("0.5"));
    order.push_back("solo");
  };
  auto quick = [](Pool& p, std::vector<std::string>& order) -> awaitable<void> {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(50));
    co_await t.async_wait(boost::asio::use_awaitable);
    for (int i = 0; i < 5; ++i) co_await p.query(kAdd, params(i, 1));
    order.push_back("batched");
  };
  auto slow_done = boost::asio::co_spawn(io_, slow(pool, finished), boost::asio::use_future);
  auto quick_done = boost::asio::co_spawn(io_, quick(pool, finished), boost::asio::use_future);
  io_.run();
  slow_done.get();
  quick_done.get();
  EXPECT_EQ(finished, (std::vector<std::string>{"batched", "solo"}));
  EXPECT_EQ(pool.stats().batched_total, 5u);
}

// While batches come back quickly, one connection carries every one-statement call: the
// statements of concurrent requests share its writes instead of waking several backends.
TEST_F(PoolTest, QuickBatchesKeepToOneConnection) {
  PoolOptions o = options(2);
  o.batch_stall = std::chrono::seconds(10);  // no batch here is ever that slow
  Pool pool(io_, o);
  constexpr int kCalls = 60;
  std::vector<std::future<Result>> done;
  for (int i = 0; i < kCalls; ++i) {
    done.push_back(
        boost::asio::co_spawn(io_, pool.query(kAdd, params(i, 1)), boost::asio::use_future));
  }
  io_.run();
  for (int i = 0; i < kCalls; ++i) EXPECT_EQ(done[i].get().get(0, "sum"), std::to_string(i + 1));
  EXPECT_EQ(pool.stats().connects_total, 1u);
  EXPECT_EQ(pool.stats().batched_total, static_cast<std::uint64_t>(kCalls));
}

// A slow statement in a batch holds the calls that arrive after it only until the batch has
// been out for batch_stall; then another connection takes them.
TEST_F(PoolTest, ASlowBatchHoldsLaterCallsOnlyUntilTheStallTime) {
  PoolOptions o = options(2);
  o.batch_stall = std::chrono::milliseconds(100);
  o.acquire_timeout = std::chrono::milliseconds(1000);
  Pool pool(io_, o);
  std::vector<std::string> finished;
  std::chrono::milliseconds quick_waited{0};
  auto slow = [](Pool& p, std::vector<std::string>& order) -> awaitable<void> {
    co_await p.query(kSleep, params("1.0"));
    order.push_back("slow");
  };
  auto quick = [](Pool& p, std::vector<std::string>& order,
                  std::chrono::milliseconds& waited) -> awaitable<void> {
    boost::asio::steady_timer t(co_await boost::asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(20));
    co_await t.async_wait(boost::asio::use_awaitable);
    auto start = std::chrono::steady_clock::now();
    co_await p.query(kAdd, params(1, 1));
    waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    order.push_back("quick");
  };
  auto slow_done = boost::asio::co_spawn(io_, slow(pool, finished), boost::asio::use_future);
  auto quick_done =
      boost::asio::co_spawn(io_, quick(pool, finished, quick_waited), boost::asio::use_future);
  io_.run();
  slow_done.get();
  quick_done.get();
  EXPECT_EQ(finished, (std::vector<std::string>{"quick", "slow"}));
  EXPECT_GE(quick_waited.count(), 60) << "the second connection started before the stall time";
  EXPECT_LT(quick_waited.count(), 900) << "the quick call waited for the slow batch";
  EXPECT_EQ(pool.stats().connects_total, 2u);
}

TEST_F(PoolTest, ReconnectsAfterTheServerDropsConnections) {
  Pool pool(io_, options(2));
  auto pid_of = [](Pool& p) -> awaitable<std::string> {
    Result r = co_await p.query(kBackendPid);
    co_return std::string(r.get(0, "pid"));
  };
  std::string before = run_sync(io_, pid_of(pool));
  // What a PostgreSQL restart looks like to a client: every backend terminated.
  testkit::sql(db_.admin_url(),
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
               "AND pid <> pg_backend_pid()",
               {db_.name()});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::string after = run_sync(io_, pid_of(pool));
  EXPECT_NE(before, after);
  EXPECT_GE(pool.stats().broken_total, 1u);
}

TEST_F(PoolTest, UnreachableServerIsAnUnavailableError) {
  auto opts = options(1);
  opts.url = "postgresql://nobody@127.0.0.1:1/none";
  Pool pool(io_, opts);
  auto task = [](Pool& p) -> awaitable<std::string> {
    try {
      co_await p.query(kAdd, params(1, 1));
    } catch (const Error& e) {
      co_return e.sqlstate();
    }
    co_return "connected";
  };
  EXPECT_EQ(run_sync(io_, task(pool)).substr(0, 2), "08");
}

}  // namespace
}  // namespace hsea::db

namespace hsea::db {
namespace {

constexpr Query kNow{"test_now", "SELECT now() AS t, NULL::timestamptz AS n"};
constexpr Query kLockTenant{"test_lock_tenant", "SELECT id FROM tenants FOR UPDATE"};

TEST_F(PoolTest, TimestampsReadAsRfc3339) {
  Pool pool(io_, options(1));
  auto task = [](Pool& p) -> awaitable<std::string> {
    Result r = co_await p.query(kNow);
    co_return r.time(0, "t");
  };
  std::string t = run_sync(io_, task(pool));
  EXPECT_EQ(t.size() >= 20, true) << t;
  EXPECT_EQ(t[10], 'T') << t;
  EXPECT_EQ(t.back(), 'Z') << t;
}

TEST_F(PoolTest, AbandonedTransactionReleasesItsLocksAtOnce) {
  std::string id = core::uuid_v7();
  testkit::sql(db_.admin_url(), "INSERT INTO tenants (id, slug, name) VALUES ($1, 'lock', 'L')",
               {id});
  Pool pool(io_, options(2));
  auto task = [](Pool& p, std::string id) -> awaitable<std::int64_t> {
    {
      Transaction tx = co_await p.begin(db::tenant_scope(id));
      co_await tx.exec(kLockTenant);
      // Dropped without commit while holding the row lock.
    }
    auto start = std::chrono::steady_clock::now();
    Transaction other = co_await p.begin(db::tenant_scope(id));
    co_await other.exec_commit(kLockTenant);  // would wait for the lock if it were still held
    co_return std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start)
        .count();
  };
  EXPECT_LT(run_sync(io_, task(pool, id)), 1000);
}

}  // namespace
}  // namespace hsea::db
