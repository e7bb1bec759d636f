// The runtime from outside: `hsea worker` runs the periodic tasks without HTTP, and a
// once-per-cluster task (a scheduled job) runs once although two processes share the database.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <thread>
#include <vector>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

TEST(Worker, RunsThePeriodicTasksWithoutHttpAndStopsCleanly) {
  testkit::TestDatabase db;
  testkit::TestServer worker(db, {}, "worker");
  EXPECT_EQ(worker.port(), 0);
  std::string out = worker.output();
  EXPECT_NE(out.find("worker running"), std::string::npos) << out;
  EXPECT_EQ(out.find("listening"), std::string::npos) << out;
  EXPECT_EQ(worker.stop(SIGTERM), 0) << worker.output();
  EXPECT_NE(worker.output().find("\"message\":\"stopped\""), std::string::npos) << worker.output();
}

TEST(Worker, AServerAndAWorkerOnOneDatabaseRunEachDailyTaskOnce) {
  testkit::TestDatabase db;
  testkit::TestServer server(db);
  testkit::TestServer worker(db, {}, "worker");
  // Both processes' schedulers enqueue the current period of every scheduled task a second after
  // start; the period's unique key lets one job through, and one worker runs it. The trial sweep
  // runs every minute, so it may have a second period by the time the others are done.
  const std::vector<std::string> kinds{
      "billing.trials_expire",           "jobs.prune",
      "periodic.account-token-prune",    "periodic.audit-retention",
      "periodic.metering-partitions",
      "periodic.metering-rollup",  // every 5 minutes
      "periodic.metering-storage",
      "periodic.metering-stripe-report",  // hourly
      "periodic.session-prune",          "periodic.tenant-purge",
      "periodic.webhooks-prune"};
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    rows = testkit::sql(db.admin_url(),
                        "SELECT kind, status, attempts FROM jobs WHERE tenant_id IS NULL "
                        "ORDER BY kind");
    seen.clear();
    bool done = true;
    for (const auto& row : rows) {
      if (seen.empty() || seen.back() != row[0]) seen.push_back(row[0]);
      done = done && row[1] == "succeeded";
    }
    if (done && seen == kinds) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(seen, kinds) << server.output() << worker.output();
  for (const auto& row : rows) {
    EXPECT_EQ(row[1], "succeeded") << row[0];
    EXPECT_EQ(row[2], "1") << row[0] << " ran more than once";
    if (row[0] != "billing.trials_expire") {
      EXPECT_EQ(
          std::count_if(rows.begin(), rows.end(), [&](const auto& r) { return r[0] == row[0]; }), 1)
          << row[0] << " was enqueued for more than one period";
    }
  }
}

std::string scalar(const testkit::TestDatabase& db, const std::string& statement) {
  return testkit::sql(db.admin_url(), statement)[0][0];
}

// Platform jobs of the no-op kind jobs.ping, enqueued in one statement.
void enqueue_pings(const testkit::TestDatabase& db, int n) {
  testkit::sql(db.admin_url(),
               "SELECT jobs_enqueue_many('jobs.ping', array_fill('{}'::jsonb, ARRAY[" +
                   std::to_string(n) + "]), 0, 5)");
}

template <typename F>
bool eventually(F done, std::chrono::seconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

TEST(Worker, TwoProcessesOnOneQueueCompleteEachJobOnce) {
  testkit::TestDatabase db;
  {
    testkit::TestServer server(db, {{"HSEA_WORKER_THREADS", "2"}});
    testkit::TestServer worker(db, {}, "worker");
    enqueue_pings(db, 6000);  // both are idle: the commit's NOTIFY wakes both
    ASSERT_TRUE(eventually(
        [&] {
          return scalar(db,
                        "SELECT count(*) FROM jobs WHERE status = 'succeeded' "
                        "AND kind = 'jobs.ping'") == "6000";
        },
        std::chrono::seconds(120)))
        << scalar(db,
                  "SELECT string_agg(status || ':' || n, ' ') FROM (SELECT status, count(*) "
                  "AS n FROM jobs GROUP BY status) s");
  }
  // The pings: the servers' own periodic jobs may be queued for later (attempts 0) when they stop.
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM jobs WHERE kind = 'jobs.ping' AND attempts <> 1"), "0")
      << "a job ran more than once: "
      << scalar(db,
                "SELECT COALESCE(string_agg(kind || ':' || status || ':' || attempts, ' '), '') "
                "FROM jobs WHERE attempts <> 1");
  // Both processes took jobs (worker is "<node>/<thread>").
  EXPECT_EQ(scalar(db,
                   "SELECT count(DISTINCT split_part(worker, '/', 1)) FROM jobs "
                   "WHERE unique_key IS NULL"),
            "2");
}

TEST(Worker, AKilledWorkerLosesNoJobAndAnotherFinishesThem) {
  testkit::TestDatabase db;
  enqueue_pings(db, 8000);
  std::map<std::string, std::string> env{{"HSEA_JOB_LEASE_SECONDS", "2"}};
  {
    testkit::TestServer first(db, env, "worker");
    ASSERT_TRUE(eventually(
        [&] {
          return std::stoi(scalar(db,
                                  "SELECT count(*) FROM jobs WHERE status = "
                                  "'succeeded'")) >= 300;
        },
        std::chrono::seconds(60)));
    first.stop(SIGKILL);
  }
  int running = std::stoi(scalar(db, "SELECT count(*) FROM jobs WHERE status = 'running'"));
  int done = std::stoi(scalar(db, "SELECT count(*) FROM jobs WHERE status = 'succeeded'"));
  ASSERT_LT(done, 8000) << "the worker finished before it was killed: the test proves nothing";
  testkit::TestServer second(db, env, "worker");
  ASSERT_TRUE(eventually(
      [&] {
        return scalar(db,
                      "SELECT count(*) FROM jobs WHERE status = 'succeeded' "
                      "AND unique_key IS NULL") == "8000";
      },
      std::chrono::seconds(120)))
      << second.output();
  // The killed worker's jobs ran again after their leases expired: twice at most.
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM jobs WHERE attempts > 2"), "0");
  EXPECT_EQ(std::stoi(scalar(db, "SELECT count(*) FROM jobs WHERE attempts = 2")), running)
      << "only the jobs the killed worker held ran twice";
}

double yielded_seconds(const testkit::TestServer& server) {
  auto r = testkit::http("GET", server.url("/metrics"));
  const std::string name = "\nhsea_jobs_yielded_seconds_total ";
  auto at = r.body.find(name);
  if (r.status != 200 || at == std::string::npos) return -1;
  return std::stod(r.body.substr(at + name.size()));
}

// The in-process worker shares its I/O threads (and the database) with requests: while
// requests arrive it pauses before its claims, and it still drains the queue.
TEST(Worker, TheInProcessWorkerYieldsToRequestsAndStillDrainsTheQueue) {
  testkit::TestDatabase db;
  testkit::TestServer server(db, {{"HSEA_WORKER_THREADS", "2"}});
  enqueue_pings(db, 2000);  // no request meanwhile: no pause
  ASSERT_TRUE(eventually(
      [&] {
        return scalar(db,
                      "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND "
                      "kind = 'jobs.ping'") == "2000";
      },
      std::chrono::seconds(60)));
  EXPECT_LT(yielded_seconds(server), 0.01);

  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      while (!stop) testkit::http("GET", server.url("/health"));
    });
  }
  enqueue_pings(db, 4000);
  bool drained = eventually(
      [&] {
        return scalar(db,
                      "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND "
                      "kind = 'jobs.ping'") == "6000";
      },
      std::chrono::seconds(120));
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_TRUE(drained) << "the worker starved under requests";
  EXPECT_GT(yielded_seconds(server), 0.01) << "the worker never paused for requests";
}

TEST(Worker, JobMetricsAreExposedAndPassPromtool) {
  testkit::TestDatabase db;
  testkit::TestServer server(db);
  enqueue_pings(db, 50);
  ASSERT_TRUE(eventually(
      [&] {
        return scalar(db,
                      "SELECT count(*) FROM jobs WHERE kind = 'jobs.ping' AND status = "
                      "'succeeded'") == "50";
      },
      std::chrono::seconds(30)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the batch's counters
  auto r = testkit::http("GET", server.url("/metrics"));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("hsea_jobs_runs_total{kind=\"jobs.ping\",outcome=\"succeeded\"} 50"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("hsea_job_run_seconds_count{kind=\"jobs.ping\"} 50"), std::string::npos);
  EXPECT_NE(r.body.find("hsea_jobs_queue_lag_seconds "), std::string::npos);
  FILE* p = popen("promtool check metrics > /tmp/hsea-promtool-jobs.out 2>&1", "w");
  ASSERT_NE(p, nullptr);
  fwrite(r.body.data(), 1, r.body.size(), p);
  EXPECT_EQ(pclose(p), 0) << "promtool rejected /metrics";
}

TEST(Worker, ExpiredRefreshTokensAndLongGoneSessionsArePrunedDaily) {
  testkit::TestDatabase db;
  auto user = testkit::sql(db.admin_url(),
                           "INSERT INTO users (id, email, name) VALUES (uuid_v7(), "
                           "'prune@example.com', 'P') RETURNING id")[0][0];
  // Sessions: live, expired long ago, revoked long ago, revoked just now.
  for (const char* when :
       {"now() + interval '1 day', NULL", "now() - interval '8 days', NULL",
        "now() + interval '1 day', now() - interval '8 days'", "now() + interval '1 day', now()"}) {
    testkit::sql(db.admin_url(),
                 std::string("INSERT INTO sessions (id, user_id, kind, expires_at, revoked_at) "
                             "VALUES (uuid_v7(), $1, 'token', ") +
                     when + ")",
                 {user});
  }
  std::string live = scalar(db, "SELECT id FROM sessions ORDER BY id LIMIT 1");
  testkit::sql(db.admin_url(),
               "INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at) VALUES "
               "('fresh', $1, $2, now() + interval '1 day'), "
               "('stale', $1, $2, now() - interval '1 second')",
               {live, user});
  testkit::TestServer worker(db, {}, "worker");
  ASSERT_TRUE(eventually(
      [&] {
        return scalar(db,
                      "SELECT count(*) FROM jobs WHERE kind = 'periodic.session-prune' "
                      "AND status = 'succeeded'") == "1";
      },
      std::chrono::seconds(30)));
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM sessions"), "2") << "live and just revoked stay";
  EXPECT_EQ(scalar(db, "SELECT string_agg(token_hash, ',') FROM refresh_tokens"), "fresh");
}

TEST(Worker, OperatorsListRetryCancelAndPingJobsFromTheCommandLine) {
  testkit::TestDatabase db;
  std::map<std::string, std::string> env{{"HSEA_DATABASE_URL", db.app_url()},
                                         {"HSEA_DATABASE_ADMIN_URL", db.admin_url()}};
  std::string failed =
      scalar(db,
             "INSERT INTO jobs (kind, status, attempts, max_attempts, last_error, "
             "finished_at) VALUES ('jobs.ping', 'failed', 3, 3, 'it broke', now()) "
             "RETURNING id");
  auto list = testkit::run_hsea({"jobs", "list", "--status", "failed"}, env);
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find(failed), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("it broke"), std::string::npos) << list.output;

  auto cancel = testkit::run_hsea({"jobs", "cancel", failed}, env);
  EXPECT_EQ(cancel.exit_code, 0) << cancel.output;
  EXPECT_EQ(scalar(db, "SELECT status FROM jobs WHERE id = '" + failed + "'"), "cancelled");
  auto again = testkit::run_hsea({"jobs", "cancel", failed}, env);
  EXPECT_EQ(again.exit_code, 1) << "a cancelled job cannot be cancelled again: " << again.output;
  auto bad = testkit::run_hsea({"jobs", "retry", "not-an-id"}, env);
  EXPECT_EQ(bad.exit_code, 1) << bad.output;

  // Retry puts it back in the queue; with a worker running, it runs and so does a ping.
  auto retry = testkit::run_hsea({"jobs", "retry", failed}, env);
  EXPECT_EQ(retry.exit_code, 0) << retry.output;
  testkit::TestServer worker(db, {}, "worker");
  ASSERT_TRUE(eventually(
      [&] {
        return scalar(db, "SELECT status FROM jobs WHERE id = '" + failed + "'") == "succeeded";
      },
      std::chrono::seconds(20)));
  auto ping = testkit::run_hsea({"jobs", "ping"}, env);
  EXPECT_EQ(ping.exit_code, 0) << ping.output;
  EXPECT_NE(ping.output.find("ms after it was enqueued"), std::string::npos) << ping.output;
}

}  // namespace
}  // namespace hsea
