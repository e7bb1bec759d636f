// The job queue on a real runtime and PostgreSQL: transactional enqueue, tenant scope,
// retries, timeouts, leases, fairness between tenants, and two runtimes sharing one queue.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <fmt/format.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/object.hpp>

#include <map>
#include <mutex>
#include <thread>

#include "core/config.hpp"
#include "core/ids.hpp"
#include "db/db.hpp"
#include "jobs/jobs.hpp"
#include "jobs/queue.hpp"
#include "runtime/registrar.hpp"
#include "security/security.hpp"
#include "testkit/testkit.hpp"

namespace hsea::jobs {
namespace {

using namespace std::chrono_literals;
using boost::asio::awaitable;
using testkit::sql;

HSEA_QUERY kTestCountTenants{"test_jobs_count_tenants", "SELECT count(*) AS n FROM tenants"};
HSEA_QUERY kTestInsertEvent{"test_jobs_insert_entry",
                            "INSERT INTO audit_logs (tenant_id, id, actor_type, actor_id, action) "
                            "VALUES (current_setting('app.tenant_id')::uuid, uuid_v7(), 'job', "
                            "'', 'test.written')"};
HSEA_QUERY kTestNothing{"test_jobs_nothing", "SELECT 1"};

core::EnvLookup env_for(const testkit::TestDatabase& db) {
  return [url = db.app_url()](std::string_view name) -> std::optional<std::string> {
    if (name == "HSEA_DATABASE_URL") return url;
    if (name == "HSEA_THREADS") return std::string("2");
    return std::nullopt;
  };
}

// A runtime with the database and jobs modules; `workers` starts the job workers on every
// thread. Kinds are defined by the test after construction (module state is per process: the
// last registered node's, shared by both nodes of a test).
struct Node {
  Node(const core::Config& c, const core::EnvLookup& env, Settings settings,
       const std::function<void(runtime::Registrar&)>& declare = {})
      : config(c) {
    runtime::Registrar registrar(config, env);
    db::Register(registrar);
    security::Register(registrar);
    Register(registrar);
    state().settings = settings;
    if (declare) declare(registrar);
    app.emplace(std::move(registrar).finish());
    rt.emplace(runtime::RuntimeOptions{.threads = 2}, app->thread_services);
    rt->start();
  }
  void start_workers() {
    app->role = runtime::Role::kWorker;
    app->started(&*rt);
  }
  ~Node() { rt->stop(); }

  template <typename T>
  T run(awaitable<T> work) {
    return boost::asio::co_spawn(*rt->io_contexts()[0], std::move(work), boost::asio::use_future)
        .get();
  }

  const core::Config& config;
  std::optional<runtime::Application> app;
  std::optional<runtime::Runtime> rt;
};

std::string make_tenant(const testkit::TestDatabase& db, const std::string& slug) {
  std::string id = core::uuid_v7();
  sql(db.admin_url(), "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)", {id, slug});
  return id;
}

// Waits until `done` is true (polling), at most `limit`.
template <typename F>
bool eventually(F done, std::chrono::milliseconds limit = 15s) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

std::string status_of(const testkit::TestDatabase& db, const std::string& id) {
  auto rows = sql(db.admin_url(), "SELECT status FROM jobs WHERE id = $1", {id});
  return rows.empty() ? "" : rows[0][0];
}

// What ran, by job id, recorded by the test handlers (on any worker thread).
struct Ledger {
  std::mutex mutex;
  std::map<std::string, int> runs;
  std::vector<std::string> order;           // payload "n" of each run, in order
  std::map<std::string, std::string> seen;  // job id -> what the handler saw
  void ran(const JobContext& job, std::string what = "") {
    std::lock_guard lock(mutex);
    ++runs[job.id()];
    if (const auto* n = job.payload().if_contains("n")) order.emplace_back(n->as_string());
    if (!what.empty()) seen[job.id()] = what;
  }
  int count(const std::string& id) {
    std::lock_guard lock(mutex);
    return runs.count(id) ? runs[id] : 0;
  }
};
Ledger* g_ledger = nullptr;

awaitable<void> record_run(JobContext& job) {
  g_ledger->ran(job);
  co_return;
}

awaitable<void> count_visible_tenants(JobContext& job) {
  db::Transaction* tx = co_await job.transaction();
  db::Result r = co_await tx->exec(kTestCountTenants);
  g_ledger->ran(job, std::string(r.get(0, "n")) + " tenant(s) visible to " + job.tenant_id());
}

awaitable<void> write_then_fail(JobContext& job) {
  db::Transaction* tx = co_await job.transaction();
  co_await tx->exec(kTestInsertEvent);
  g_ledger->ran(job);
  throw std::runtime_error("failed after writing");
}

awaitable<void> write_and_succeed(JobContext& job) {
  db::Transaction* tx = co_await job.transaction();
  co_await tx->exec(kTestInsertEvent);
  g_ledger->ran(job);
}

awaitable<void> sleep_long(JobContext& job) {
  g_ledger->ran(job);
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  timer.expires_after(30s);
  co_await timer.async_wait(boost::asio::use_awaitable);
}

std::chrono::milliseconds quick_backoff(int) { return 50ms; }

// Enqueues in a transaction of the tenant that then commits or rolls back.
awaitable<std::optional<std::string>> enqueue_in_tx(std::string tenant, std::string kind,
                                                    bool commit) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  std::optional<std::string> id = co_await enqueue(tx, job(kind));
  if (commit) co_await tx.commit();
  co_return id;  // without commit: rolled back when tx goes
}

awaitable<std::optional<std::string>> enqueue_one(std::string tenant, NewJob j) {
  co_return co_await enqueue(std::move(tenant), std::move(j));
}

awaitable<std::int64_t> enqueue_numbered(std::string tenant, std::string kind, int from, int n) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  std::vector<std::string> payloads;
  for (int i = from; i < from + n; ++i) payloads.push_back(fmt::format("{{\"n\":\"{}\"}}", i));
  std::int64_t added = co_await enqueue_many(tx, kind, std::move(payloads));
  co_await tx.commit();
  co_return added;
}

class Jobs : public ::testing::Test {
 protected:
  void SetUp() override { g_ledger = &ledger_; }
  void TearDown() override { g_ledger = nullptr; }
  testkit::TestDatabase db_;
  core::EnvLookup env_ = env_for(db_);
  core::Config config_ = core::load_config(env_, false).value();
  Ledger ledger_;
};

TEST_F(Jobs, AJobCommitsWithItsCauseAndRunsInItsTenantsScope) {
  std::string a = make_tenant(db_, "jobs-a"), b = make_tenant(db_, "jobs-b");
  Node node(config_, env_, Settings{});
  add_kind({.kind = "test.scope", .run = count_visible_tenants});
  node.start_workers();
  std::optional<std::string> kept = node.run(enqueue_in_tx(a, "test.scope", true));
  std::optional<std::string> dropped = node.run(enqueue_in_tx(b, "test.scope", false));
  ASSERT_TRUE(kept && dropped);
  ASSERT_TRUE(eventually([&] { return status_of(db_, *kept) == "succeeded"; }))
      << status_of(db_, *kept);
  EXPECT_EQ(status_of(db_, *dropped), "") << "a job of a rolled-back transaction exists";
  std::this_thread::sleep_for(200ms);
  std::lock_guard lock(ledger_.mutex);
  EXPECT_EQ(ledger_.runs.size(), 1u);
  // Row-level security holds in the job: tenant A's job sees tenant A only.
  EXPECT_EQ(ledger_.seen[*kept], "1 tenant(s) visible to " + a);
  auto owner = sql(db_.admin_url(), "SELECT tenant_id FROM jobs WHERE id = $1", {*kept});
  EXPECT_EQ(owner[0][0], a);
}

TEST_F(Jobs, AFailingJobIsRetriedWithBackoffThenFailsAndItsWritesRollBack) {
  std::string a = make_tenant(db_, "jobs-a");
  Node node(config_, env_, Settings{});
  add_kind(
      {.kind = "test.fail", .run = write_then_fail, .max_attempts = 3, .backoff = quick_backoff});
  node.start_workers();
  std::optional<std::string> id = node.run(enqueue_one(a, job("test.fail")));
  ASSERT_TRUE(id);
  ASSERT_TRUE(eventually([&] { return status_of(db_, *id) == "failed"; })) << status_of(db_, *id);
  auto row =
      sql(db_.admin_url(),
          "SELECT attempts, last_error, finished_at IS NOT NULL FROM jobs WHERE id = $1", {*id});
  EXPECT_EQ(row[0][0], "3");
  EXPECT_EQ(row[0][1], "failed after writing");
  EXPECT_EQ(row[0][2], "t");
  EXPECT_EQ(ledger_.count(*id), 3);
  auto written =
      sql(db_.admin_url(), "SELECT count(*) FROM audit_logs WHERE action = 'test.written'");
  EXPECT_EQ(written[0][0], "0") << "a failed attempt's writes were committed";
}

TEST_F(Jobs, ASucceedingJobsWritesCommitWithItsCompletion) {
  std::string a = make_tenant(db_, "jobs-a");
  Node node(config_, env_, Settings{});
  add_kind({.kind = "test.write", .run = write_and_succeed});
  node.start_workers();
  std::optional<std::string> id = node.run(enqueue_one(a, job("test.write")));
  ASSERT_TRUE(eventually([&] { return status_of(db_, *id) == "succeeded"; }));
  auto written =
      sql(db_.admin_url(),
          "SELECT count(*) FROM audit_logs WHERE action = 'test.written' AND tenant_id = $1", {a});
  EXPECT_EQ(written[0][0], "1");
}

TEST_F(Jobs, AJobPastItsKindsTimeoutIsCancelledAndFails) {
  Node node(config_, env_, Settings{});
  add_kind({.kind = "test.slow", .run = sleep_long, .max_attempts = 1, .timeout = 1s});
  node.start_workers();
  auto started = std::chrono::steady_clock::now();
  std::optional<std::string> id = node.run(enqueue_one("", job("test.slow")));
  ASSERT_TRUE(eventually([&] { return status_of(db_, *id) == "failed"; }));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  auto row =
      sql(db_.admin_url(), "SELECT last_error, tenant_id IS NULL FROM jobs WHERE id = $1", {*id});
  EXPECT_EQ(row[0][0], "timed out after 1 s");
  EXPECT_EQ(row[0][1], "t") << "an enqueue without a tenant makes a platform job";
}

TEST_F(Jobs, AUniqueKeyEnqueuesOnce) {
  std::string a = make_tenant(db_, "jobs-a"), b = make_tenant(db_, "jobs-b");
  Node node(config_, env_, Settings{});
  add_kind({.kind = "test.unique", .run = record_run});
  NewJob j = job("test.unique");
  j.unique_key = "period-1";
  j.delay = 1h;
  EXPECT_TRUE(node.run(enqueue_one(a, j)));
  EXPECT_FALSE(node.run(enqueue_one(a, j))) << "the same key enqueued twice for one tenant";
  EXPECT_TRUE(node.run(enqueue_one(b, j))) << "keys are per tenant";
  EXPECT_THROW(node.run(enqueue_one(a, job("no.such.kind"))), std::logic_error);
}

TEST_F(Jobs, PruningRemovesOldFinishedJobsButKeepsEachSchedulesLatestPeriod) {
  // Old finished jobs: two periods of a schedule, a plain job; and a recent one (one statement
  // each, so their ids are in this order).
  for (
      const char* row :
      {"('periodic.weekly', 'succeeded', 'schedule:periodic.weekly:1', now() - interval '30 days')",
       "('periodic.weekly', 'succeeded', 'schedule:periodic.weekly:2', now() - interval '20 days')",
       "('jobs.ping', 'failed', NULL, now() - interval '20 days')",
       "('jobs.ping', 'succeeded', NULL, now())"}) {
    sql(db_.admin_url(),
        std::string("INSERT INTO jobs (kind, status, unique_key, finished_at) VALUES ") + row);
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(sql(db_.app_url(), "SELECT jobs_prune(14)")[0][0], "2");
  auto left = sql(db_.admin_url(), "SELECT coalesce(unique_key, kind) FROM jobs ORDER BY id");
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0][0], "schedule:periodic.weekly:2") << "the schedule's latest period went";
  EXPECT_EQ(left[1][0], "jobs.ping");
}

TEST_F(Jobs, ALostLeaseCannotFinishTheJob) {
  std::string a = make_tenant(db_, "jobs-a");
  sql(db_.admin_url(),
      "SELECT set_config('app.tenant_id', $1, false), "
      "jobs_enqueue('test.lease', '{}', 0, 0, 5, NULL)",
      {a});
  // Worker 1 claims, its lease expires and is reaped; worker 2 claims the job again.
  auto first = sql(db_.app_url(), "SELECT id, lease_token FROM jobs_claim('w1', 1, 30)");
  ASSERT_EQ(first.size(), 1u);
  sql(db_.admin_url(), "UPDATE jobs SET lease_expires_at = now() - interval '1 s'");
  EXPECT_EQ(sql(db_.app_url(), "SELECT jobs_reap()")[0][0], "1");
  auto second = sql(db_.app_url(), "SELECT id, lease_token FROM jobs_claim('w2', 1, 30)");
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0][0], first[0][0]);
  // The first worker's late completion is refused; the second one's lands.
  EXPECT_THROW(
      sql(db_.app_url(), "SELECT jobs_finish($1, $2, NULL, NULL)", {first[0][0], first[0][1]}),
      std::exception);
  EXPECT_EQ(sql(db_.app_url(), "SELECT jobs_finish($1, $2, NULL, NULL)",
                {second[0][0], second[0][1]})[0][0],
            "succeeded");
  auto row = sql(db_.admin_url(), "SELECT attempts, worker FROM jobs");
  EXPECT_EQ(row[0][0], "2");
  EXPECT_EQ(row[0][1], "w2");
}

TEST_F(Jobs, ATenantWithAHugeBacklogDoesNotDelayAnotherTenantsJob) {
  std::string a = make_tenant(db_, "jobs-a"), b = make_tenant(db_, "jobs-b");
  Node node(config_, env_, Settings{});
  add_kind({.kind = "test.fair", .run = record_run});
  node.start_workers();
  // Tenant A enqueues 100 000 jobs in one statement while the workers run; then tenant B one.
  ASSERT_EQ(sql(db_.admin_url(),
                "SELECT set_config('app.tenant_id', $1, false), jobs_enqueue_many('test.fair', "
                "array_fill('{\"n\":\"A\"}'::jsonb, ARRAY[100000]), 0, 5)",
                {a})[0][1],
            "100000");
  std::this_thread::sleep_for(200ms);  // A's backlog is being worked on
  NewJob bj = job("test.fair", R"({"n":"B"})");
  std::optional<std::string> id = node.run(enqueue_one(b, bj));
  ASSERT_TRUE(id);
  ASSERT_TRUE(eventually([&] { return status_of(db_, *id) == "succeeded"; }, 30s));
  auto waited = sql(db_.admin_url(),
                    "SELECT EXTRACT(epoch FROM finished_at - created_at) * 1000, "
                    "(SELECT count(*) FROM jobs WHERE tenant_id = $2 AND status = 'queued') "
                    "FROM jobs WHERE id = $1",
                    {*id, a});
  double ms = std::stod(waited[0][0]);
  long a_left = std::stol(waited[0][1]);
  // Round-robin between tenants: B's job waits for the jobs in flight, not for A's backlog.
  EXPECT_LT(ms, 3000) << "tenant B's job waited " << ms << " ms behind tenant A's backlog";
  EXPECT_GT(a_left, 1000) << "A's backlog was done before B's job ran: the test proves nothing";
  RecordProperty("tenant_b_wait_ms", std::to_string(static_cast<int>(ms)));
  std::printf("tenant B's job ran %.0f ms after its enqueue, with %ld of A's jobs still queued\n",
              ms, a_left);
}

TEST_F(Jobs, TwoRuntimesSharingTheQueueRunEveryJobExactlyOnce) {
  std::string a = make_tenant(db_, "jobs-a"), b = make_tenant(db_, "jobs-b");
  Node one(config_, env_, Settings{});
  Node two(config_, env_, Settings{});
  add_kind({.kind = "test.once", .run = record_run});
  ASSERT_EQ(one.run(enqueue_numbered(a, "test.once", 0, 1000)), 1000);
  ASSERT_EQ(two.run(enqueue_numbered(b, "test.once", 1000, 1000)), 1000);
  one.start_workers();
  two.start_workers();
  ASSERT_TRUE(eventually(
      [&] {
        return sql(db_.admin_url(), "SELECT count(*) FROM jobs WHERE status = 'succeeded'")[0][0] ==
               "2000";
      },
      60s));
  std::lock_guard lock(ledger_.mutex);
  EXPECT_EQ(ledger_.runs.size(), 2000u);
  for (const auto& [id, n] : ledger_.runs) EXPECT_EQ(n, 1) << id << " ran " << n << " times";
  auto workers =
      sql(db_.admin_url(), "SELECT count(DISTINCT split_part(worker, '/', 2)) FROM jobs");
  EXPECT_EQ(workers[0][0], "2") << "both threads of the runtimes took jobs";
  one.rt->stop();  // before `two` takes the module state with it
}

// A LISTEN on hsea_jobs of its own (what another node's job listener is).
struct Listener {
  explicit Listener(const std::string& url) : conn(PQconnectdb(url.c_str())) {
    PQclear(PQexec(conn, "LISTEN hsea_jobs"));
  }
  ~Listener() { PQfinish(conn); }
  // Notifications received within `wait`.
  int received(std::chrono::milliseconds wait) {
    int n = 0;
    auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      PQconsumeInput(conn);
      while (PGnotify* note = PQnotifies(conn)) {
        ++n;
        PQfreemem(note);
      }
      std::this_thread::sleep_for(20ms);
    }
    return n;
  }
  PGconn* conn;
};

// hsea's enqueues send no NOTIFY inside their transaction (PostgreSQL commits notifying
// transactions one at a time); anything else that adds or requeues jobs still does.
TEST_F(Jobs, OnlyTransactionsNotMarkedToWakeAfterCommitNotifyFromTheTrigger) {
  std::string a = make_tenant(db_, "jobs-a");
  Listener listener(db_.admin_url());
  testkit::sql(db_.admin_url(),
               "WITH w AS (SELECT set_config('hsea.jobs_wake', 'after_commit', true)) "
               "SELECT jobs_enqueue('test.marked', '{}', 0, 0, 5, NULL) FROM w");
  EXPECT_EQ(listener.received(300ms), 0) << "a marked transaction notified";
  testkit::sql(db_.admin_url(), "INSERT INTO jobs (tenant_id, kind) VALUES ($1, 'test.plain')",
               {a});
  EXPECT_EQ(listener.received(300ms), 1) << "an unmarked insert did not notify";
  testkit::sql(db_.admin_url(),
               "UPDATE jobs SET status = 'failed' WHERE kind = 'test.plain'; "
               "UPDATE jobs SET status = 'queued' WHERE kind = 'test.plain'");
  EXPECT_GE(listener.received(300ms), 1) << "a requeue did not notify";
}

// After the enqueuing transaction commits, other nodes hear of it (one NOTIFY sent outside
// it), and this node's idle worker runs the job at once, long before its safety-net poll.
TEST_F(Jobs, AnEnqueueWakesWorkersAfterItsTransactionCommits) {
  std::string a = make_tenant(db_, "jobs-a");
  Listener listener(db_.admin_url());
  Node node(config_, env_, Settings{.poll_ms = 60'000});
  add_kind({.kind = "test.woken", .run = record_run});
  node.start_workers();
  std::this_thread::sleep_for(300ms);  // the workers are idle, waiting for their minute's poll
  listener.received(0ms);
  auto started = std::chrono::steady_clock::now();
  std::optional<std::string> id = node.run(enqueue_in_tx(a, "test.woken", true));
  ASSERT_TRUE(id);
  ASSERT_TRUE(eventually([&] { return ledger_.count(*id) == 1; }, 10s));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_GE(listener.received(500ms), 1) << "other nodes were not told";
  // A rolled-back enqueue wakes no one and leaves no job.
  std::optional<std::string> gone = node.run(enqueue_in_tx(a, "test.woken", false));
  ASSERT_TRUE(gone);
  EXPECT_EQ(listener.received(500ms), 0);
  EXPECT_EQ(status_of(db_, *gone), "");
}

awaitable<void> record_event(JobContext& job) {
  std::optional<Event> e = co_await event_of(job);
  g_ledger->ran(
      job, e ? e->type + " " + e->data + " by " + e->actor_type + ":" + e->actor_id : "no event");
}

// Emits an event in a transaction of the tenant that then commits or rolls back.
awaitable<std::string> emit_in_tx(std::string tenant, std::string type, bool commit) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  security::Actor actor{.kind = security::Actor::Kind::kJob, .id = "test"};
  std::string id = co_await emit(tx, actor, "req-1", type, R"({"n":1})");
  if (commit) co_await tx.commit();
  co_return id;
}

TEST_F(Jobs, AnEventEnqueuesItsSubscribersJobsOnlyWhenItsChangeCommits) {
  std::string a = make_tenant(db_, "jobs-a");
  Node node(config_, env_, Settings{}, [](runtime::Registrar& reg) {
    event_type(reg, {"test.happened", "a test event"});
    event_type(reg, {"test.other", "another"});
    define(reg, {.kind = "test.on_any", .run = record_event});
    define(reg, {.kind = "test.on_happened", .run = record_event});
    subscribe(reg, {.kind = "test.on_any"});
    subscribe(reg, {.kind = "test.on_happened", .types = {"test.happened"}});
  });
  node.start_workers();
  std::string kept = node.run(emit_in_tx(a, "test.happened", true));
  std::string dropped = node.run(emit_in_tx(a, "test.happened", false));
  std::string other = node.run(emit_in_tx(a, "test.other", true));
  ASSERT_TRUE(eventually([&] {
    return sql(db_.admin_url(), "SELECT count(*) FROM jobs WHERE status = 'succeeded'")[0][0] ==
           "3";
  }));
  auto events = sql(db_.admin_url(), "SELECT id FROM events ORDER BY id");
  ASSERT_EQ(events.size(), 2u) << "an event of a rolled-back change exists";
  EXPECT_EQ(events[0][0], kept);
  EXPECT_EQ(events[1][0], other);
  auto jobs = sql(db_.admin_url(),
                  "SELECT kind, payload->>'event_id', tenant_id FROM jobs ORDER BY kind, id");
  ASSERT_EQ(jobs.size(), 3u);
  EXPECT_EQ(jobs[0][0], "test.on_any");
  EXPECT_EQ(jobs[2][0], "test.on_happened");
  EXPECT_EQ(jobs[2][1], kept);
  EXPECT_EQ(jobs[2][2], a) << "a subscriber's job runs in the event's tenant";
  std::lock_guard lock(ledger_.mutex);
  for (const auto& [id, what] : ledger_.seen) {
    EXPECT_NE(what.find("{\"n\": 1} by job:test"), std::string::npos) << what;
  }
  EXPECT_EQ(ledger_.seen.size(), 3u);
  EXPECT_THROW(node.run(emit_in_tx(a, "test.undeclared", true)), std::logic_error);
}

}  // namespace
}  // namespace hsea::jobs
