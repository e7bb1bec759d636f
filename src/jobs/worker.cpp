// Enqueueing, the worker loop (claim, run, heartbeat, finish), the scheduler and the queue
// snapshot. The SQL functions are in migrations/0005_jobs.sql.
#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <set>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/server.hpp"
#include "jobs/queue.hpp"
#include "runtime/runtime.hpp"

namespace hsea::jobs {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using Clock = std::chrono::steady_clock;

// The CTE marks the transaction before the insert's trigger runs: its workers are woken after
// it commits (wake_after_commit), not by a NOTIFY inside it (migrations/0026).
HSEA_QUERY kEnqueue{"jobs_enqueue",
                    "WITH wake AS (SELECT set_config('hsea.jobs_wake', 'after_commit', true)) "
                    "SELECT jobs_enqueue($1, $2::jsonb, $3, $4, $5, NULLIF($6, '')) AS id "
                    "FROM wake"};
HSEA_QUERY kEnqueueMany{"jobs_enqueue_many",
                        "WITH wake AS (SELECT set_config('hsea.jobs_wake', 'after_commit', true)) "
                        "SELECT jobs_enqueue_many($1, $2::jsonb[], $3, $4) AS n FROM wake"};
HSEA_QUERY kNotifyNodes{"jobs_notify_nodes", "SELECT pg_notify('hsea_jobs', '')"};
HSEA_QUERY kClaim{"jobs_claim",
                  "SELECT id, tenant_id, kind, payload::text AS payload, attempts, max_attempts, "
                  "lease_token FROM jobs_claim($1, $2, $3)"};
HSEA_QUERY kRenew{"jobs_renew", "SELECT jobs_renew($1::uuid[], $2::uuid[], $3) AS id"};
HSEA_QUERY kFinish{"jobs_finish",
                   "SELECT jobs_finish($1, $2, $3, "
                   "CASE WHEN $4::bigint IS NULL THEN NULL "
                   "ELSE now() + make_interval(secs => $4::bigint / 1000.0) END) AS status"};
HSEA_QUERY kSucceed{"jobs_succeed", "SELECT jobs_succeed($1::uuid[], $2::uuid[]) AS id"};
HSEA_QUERY kReap{"jobs_reap", "SELECT jobs_reap() AS n"};
HSEA_QUERY kNextDue{
    "jobs_next_due",
    "SELECT GREATEST(0, EXTRACT(epoch FROM jobs_next_due() - now()) * 1000)::bigint "
    "AS wait_ms"};
HSEA_QUERY kStats{"jobs_stats", "SELECT kind, status, jobs, oldest_due_seconds FROM jobs_stats()"};

// jobs_finish() raises this when the lease is no longer the caller's.
constexpr std::string_view kLeaseLost = "HS001";

// Postgres array literal of uuids: "{a,b}" (ids and tokens are UUIDs, no quoting needed).
std::string uuid_array(const std::vector<std::string>& ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ',';
    out += ids[i];
  }
  return out + '}';
}

// A Postgres array literal of JSON texts, each element quoted.
std::string json_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + '}';
}

const Kind& kind_or_throw(const std::string& kind) {
  const Kind* k = find_kind(kind);
  if (k == nullptr) throw std::logic_error("no module defines the job kind " + kind);
  return *k;
}

db::Params enqueue_params(const NewJob& job) {
  const Kind& k = kind_or_throw(job.kind);
  return db::params(job.kind, job.payload, job.priority.value_or(k.priority),
                    static_cast<std::int64_t>(job.delay.count()),
                    job.max_attempts.value_or(k.max_attempts), job.unique_key);
}

std::optional<std::string> enqueued_id(const db::Result& r) {
  if (r.empty() || r.is_null(0, 0)) return std::nullopt;
  return std::string(r.get(0, 0));
}

}  // namespace

std::chrono::milliseconds default_backoff(int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  double step = 5000.0 * std::pow(2.0, std::clamp(attempt - 1, 0, 20));
  step = std::min(step, 3600.0 * 1000);
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(step * jitter(rng)));
}

// The NOTIFY for other nodes' workers: one at a time per process, and the commits made while
// one is out share the next, so a burst of enqueues costs a few notifications, each in a
// transaction of its own that writes nothing else.
namespace {
std::atomic<bool> g_notify_sending{false};
std::atomic<bool> g_notify_wanted{false};

awaitable<void> notify_nodes() {
  while (true) {
    g_notify_wanted.store(false);
    try {
      co_await db::pool().query(kNotifyNodes);
    } catch (const std::exception& e) {
      // Their safety-net poll finds the job; this process's workers were woken already.
      log::warn("job notification failed", {{"error", e.what()}});
    }
    if (g_notify_wanted.load()) continue;
    g_notify_sending.store(false);
    // A commit that came between the check and the store found the flag still set.
    if (!g_notify_wanted.load() || g_notify_sending.exchange(true)) co_return;
  }
}
}  // namespace

void wake_after_commit() {
  wake_workers();
  g_notify_wanted.store(true);
  runtime::ThreadContext* thread = runtime::ThreadContext::current();
  if (thread == nullptr || g_notify_sending.exchange(true)) return;
  runtime::spawn(thread->io(), notify_nodes(), "job notification");
}

awaitable<std::optional<std::string>> enqueue(db::Transaction& tx, NewJob job) {
  db::Result r = co_await tx.exec(kEnqueue, enqueue_params(job));
  tx.after_commit(wake_after_commit);
  co_return enqueued_id(r);
}

awaitable<std::optional<std::string>> enqueue(std::string tenant_id, NewJob job) {
  db::Result r =
      co_await db::pool().tenant_query(std::move(tenant_id), kEnqueue, enqueue_params(job));
  wake_after_commit();
  co_return enqueued_id(r);
}

awaitable<std::int64_t> enqueue_many(db::Transaction& tx, std::string kind,
                                     std::vector<std::string> payloads) {
  const Kind& k = kind_or_throw(kind);
  db::Result r = co_await tx.exec(
      kEnqueueMany, db::params(kind, json_array(payloads), k.priority, k.max_attempts));
  tx.after_commit(wake_after_commit);
  co_return r.get_int(0, "n");
}

// ------------------------------------------------------------------------------ JobContext

struct JobContext::Impl {
  std::string id, tenant_id, kind, token;
  int attempt = 1;
  boost::json::object payload;
  std::optional<db::Transaction> tx;
};

JobContext::JobContext(Impl& impl)
    : impl_(impl),
      id_(impl.id),
      tenant_id_(impl.tenant_id),
      kind_(impl.kind),
      attempt_(impl.attempt) {}

const boost::json::object& JobContext::payload() const { return impl_.payload; }

awaitable<db::Transaction*> JobContext::transaction() {
  if (!impl_.tx) {
    db::Transaction tx = co_await db::pool().begin(db::tenant_scope(impl_.tenant_id));
    impl_.tx.emplace(std::move(tx));
  }
  co_return &*impl_.tx;
}

// ---------------------------------------------------------------------------------- worker

namespace {

struct Running {
  std::string id, token;
  asio::steady_timer* deadline = nullptr;
  bool lease_lost = false;
};

// A success waiting to be written with others (jobs_succeed): signal is cancelled once it was.
struct BatchedSuccess {
  std::string id, token;
  asio::steady_timer* signal = nullptr;
  bool held = false;     // written: the lease still held
  bool written = false;  // false: the statement failed, nothing was written
};

// One per worker thread.
struct Worker {
  explicit Worker(asio::io_context& io) : io(io), wake(io), finisher_wake(io) {}
  asio::io_context& io;
  asio::steady_timer wake;
  bool notified = false;
  int in_flight = 0;
  bool waiting_for_slots = false;           // the loop waits until half the slots are free
  std::map<std::string, Running*> running;  // by job id, for the heartbeat
  std::vector<BatchedSuccess*> succeeded;   // waiting for the finisher
  asio::steady_timer finisher_wake;
  Clock::duration queue_time{};     // in the worker's own queue statements since the last claim
  std::uint64_t requests_seen = 0;  // http::requests_started_on_this_thread() at the last claim
};

std::mutex g_workers_mutex;
std::vector<Worker*> g_workers;

struct Registration {
  explicit Registration(Worker* w) : worker(w) {
    std::lock_guard lock(g_workers_mutex);
    g_workers.push_back(worker);
  }
  ~Registration() {
    std::lock_guard lock(g_workers_mutex);
    std::erase(g_workers, worker);
  }
  Worker* worker;
};

// A statement of the worker itself (claim, completion, heartbeat, reap), not a handler's: its
// time counts towards what the worker yields to requests. Sent alone, not batched: a claim over
// a bloated queue can take tens of milliseconds, which must not hold up requests' statements.
awaitable<db::Result> queue_query(Worker& w, const db::Query& query, db::Params params = {}) {
  auto started = Clock::now();
  db::Result r = co_await db::pool().solo_query(query, std::move(params));
  w.queue_time += Clock::now() - started;
  co_return r;
}

// While this thread serves requests, the worker keeps its queue statements to a quarter of the
// time: before each claim it pauses three times as long as they took since the previous claim
// (at most 100 ms). On a 2-core node a worker draining a backlog at full speed would otherwise
// take the database's CPU from the requests. Without requests (`hsea worker`, an idle API node)
// it never pauses.
Clock::duration yield_before_claim(Worker& w) {
  constexpr int kYieldFactor = 3;
  constexpr Clock::duration kMaxYield = std::chrono::milliseconds(100);
  std::uint64_t seen = http::requests_started_on_this_thread();
  Clock::duration pause{};
  if (seen != w.requests_seen) pause = std::min(w.queue_time * kYieldFactor, kMaxYield);
  w.requests_seen = seen;
  w.queue_time = {};
  return pause;
}

void notify(Worker& w) {
  w.notified = true;
  w.wake.cancel();
}

void observe(const std::string& kind, Clock::duration took, std::string_view outcome) {
  auto it = state().stats.find(kind);
  if (it == state().stats.end()) return;
  KindStats& s = *it->second;
  double seconds = std::chrono::duration<double>(took).count();
  for (std::size_t i = 0; i < std::size(kRunBuckets); ++i) {
    if (seconds <= kRunBuckets[i]) s.buckets[i].fetch_add(1, std::memory_order_relaxed);
  }
  s.count.fetch_add(1, std::memory_order_relaxed);
  s.sum_us.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  if (outcome == "succeeded") s.succeeded.fetch_add(1, std::memory_order_relaxed);
  if (outcome == "failed") s.failed.fetch_add(1, std::memory_order_relaxed);
  if (outcome == "queued") s.retried.fetch_add(1, std::memory_order_relaxed);
  if (outcome == "lost") s.lost.fetch_add(1, std::memory_order_relaxed);
}

// A busy worker claims again once this many slots are free: claims come in batches, not one
// per finished job.
int refill_at() { return std::max(1, state().settings.concurrency / 2); }

awaitable<std::exception_ptr> run_capturing(const Handler& handler, JobContext& ctx) {
  try {
    co_await handler(ctx);
  } catch (...) {
    co_return std::current_exception();
  }
  co_return nullptr;
}

awaitable<void> wait_for(asio::steady_timer& timer) {
  co_await timer.async_wait(asio::as_tuple(use_awaitable));
}

std::string describe(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown error";
  }
}

awaitable<void> run_job(Worker& w, JobContext::Impl job) {
  using namespace asio::experimental::awaitable_operators;
  auto started = Clock::now();
  Running running{job.id, job.token};
  w.running[job.id] = &running;
  const Kind* kind = find_kind(job.kind);
  std::optional<std::string> error;
  std::optional<std::int64_t> retry_ms;
  try {
    if (kind == nullptr) {
      // A node of an older or newer release may know it: retry later.
      error = "no handler for this job kind on node " + state().node;
      retry_ms = default_backoff(job.attempt).count();
    } else {
      JobContext ctx(job);
      asio::steady_timer deadline(w.io);
      running.deadline = &deadline;
      deadline.expires_after(kind->timeout);
      auto outcome = co_await (run_capturing(kind->run, ctx) || wait_for(deadline));
      running.deadline = nullptr;
      if (outcome.index() == 1) {
        error = running.lease_lost ? "the lease was lost (another worker took the job over)"
                                   : fmt::format("timed out after {} s", kind->timeout.count());
      } else if (std::exception_ptr e = std::get<0>(outcome)) {
        error = describe(e);
      }
      if (error) retry_ms = kind->backoff(job.attempt).count();
    }
    if (running.lease_lost) throw db::Error(std::string(kLeaseLost), "lease lost");
    std::string status = "succeeded";
    if (!job.tx && !error) {
      // Nothing of the job's own to commit with it: written in a batch with others.
      asio::steady_timer signal(w.io, asio::steady_timer::time_point::max());
      BatchedSuccess success{job.id, job.token, &signal};
      w.succeeded.push_back(&success);
      w.finisher_wake.cancel();
      co_await signal.async_wait(asio::as_tuple(use_awaitable));
      if (!success.written) throw db::Error("08006", "the batched completion failed");
      if (!success.held) throw db::Error(std::string(kLeaseLost), "lease lost");
    } else {
      db::Params finish = db::params(job.id, job.token, error, retry_ms);
      db::Result r;
      if (job.tx && !error) {
        r = co_await job.tx->exec_commit(kFinish, std::move(finish));
      } else {
        job.tx.reset();  // a failed attempt's writes roll back
        r = co_await queue_query(w, kFinish, std::move(finish));
      }
      status = r.get(0, "status");
    }
    observe(job.kind, Clock::now() - started, status);
    if (error) {
      log::warn(status == "failed" ? "job failed" : "job attempt failed",
                {{"job_id", job.id},
                 {"kind", job.kind},
                 {"tenant_id", job.tenant_id},
                 {"attempt", job.attempt},
                 {"error", *error}});
    }
  } catch (const db::Error& e) {
    if (e.sqlstate() == kLeaseLost) {
      observe(job.kind, Clock::now() - started, "lost");
      log::warn("job lease lost: another worker runs it", {{"job_id", job.id}, {"kind", job.kind}});
    } else {
      // The finish was not written: the lease expires and the job runs again.
      log::error("job could not be finished",
                 {{"job_id", job.id}, {"kind", job.kind}, {"error", std::string(e.what())}});
    }
  }
  w.running.erase(job.id);
  --w.in_flight;
  if (w.waiting_for_slots && state().settings.concurrency - w.in_flight >= refill_at()) {
    w.waiting_for_slots = false;
    notify(w);
  }
}

// Writes the successes that accumulated while the previous batch was in flight, in one
// statement per batch.
awaitable<void> finisher(Worker& w) {
  while (true) {
    if (w.succeeded.empty()) {
      w.finisher_wake.expires_at(asio::steady_timer::time_point::max());
      co_await w.finisher_wake.async_wait(asio::as_tuple(use_awaitable));
      continue;
    }
    std::vector<BatchedSuccess*> batch = std::exchange(w.succeeded, {});
    std::vector<std::string> ids, tokens;
    for (const BatchedSuccess* b : batch) {
      ids.push_back(b->id);
      tokens.push_back(b->token);
    }
    try {
      db::Result r =
          co_await queue_query(w, kSucceed, db::params(uuid_array(ids), uuid_array(tokens)));
      std::set<std::string, std::less<>> held;
      for (int i = 0; i < r.rows(); ++i) held.emplace(r.get(i, 0));
      for (BatchedSuccess* b : batch) {
        b->written = true;
        b->held = held.contains(b->id);
      }
    } catch (const std::exception& e) {
      log::warn("batched job completion failed", {{"jobs", batch.size()}, {"error", e.what()}});
    }
    for (BatchedSuccess* b : batch) b->signal->cancel();
  }
}

awaitable<void> heartbeat(Worker& w) {
  asio::steady_timer timer(w.io);
  const int lease = state().settings.lease_seconds;
  while (true) {
    timer.expires_after(std::chrono::milliseconds(lease * 1000 / 3));
    co_await timer.async_wait(use_awaitable);
    if (w.running.empty()) continue;
    std::vector<std::string> ids, tokens;
    for (const auto& [id, r] : w.running) {
      ids.push_back(id);
      tokens.push_back(r->token);
    }
    try {
      db::Result r =
          co_await queue_query(w, kRenew, db::params(uuid_array(ids), uuid_array(tokens), lease));
      std::set<std::string, std::less<>> held;
      for (int i = 0; i < r.rows(); ++i) held.emplace(r.get(i, 0));
      for (const std::string& id : ids) {
        auto it = w.running.find(id);
        if (held.contains(id) || it == w.running.end()) continue;
        it->second->lease_lost = true;  // cancel it: another worker has it now
        if (it->second->deadline) it->second->deadline->cancel();
      }
    } catch (const std::exception& e) {
      log::warn("job heartbeat failed", {{"error", std::string(e.what())}});
    }
  }
}

}  // namespace

awaitable<void> run_worker(int thread_index) {
  asio::io_context& io =
      static_cast<asio::io_context&>((co_await asio::this_coro::executor).context());
  Worker w(io);
  Registration registration(&w);
  const Settings& settings = state().settings;
  std::string name = fmt::format("{}/{}", state().node, thread_index);
  runtime::spawn(io, heartbeat(w), "job heartbeat");
  runtime::spawn(io, finisher(w), "job finisher");
  asio::steady_timer yield_timer(io);
  auto last_reap = Clock::now() - std::chrono::hours(1);
  auto backoff = std::chrono::milliseconds(100);
  while (true) {
    std::chrono::milliseconds idle(settings.poll_ms);
    try {
      if (Clock::now() - last_reap > std::chrono::seconds(settings.lease_seconds) / 2) {
        last_reap = Clock::now();
        db::Result reaped = co_await queue_query(w, kReap);
        if (reaped.get_int(0, "n") > 0) {
          log::warn("jobs of a stopped worker queued again", {{"jobs", reaped.get_int(0, "n")}});
        }
      }
      w.notified = false;
      int free = settings.concurrency - w.in_flight;
      w.waiting_for_slots = free < refill_at();
      if (!w.waiting_for_slots) {
        if (Clock::duration pause = yield_before_claim(w); pause > Clock::duration::zero()) {
          yield_timer.expires_after(pause);
          co_await yield_timer.async_wait(asio::as_tuple(use_awaitable));
          state().yielded_us.fetch_add(
              std::chrono::duration_cast<std::chrono::microseconds>(pause).count(),
              std::memory_order_relaxed);
          free = settings.concurrency - w.in_flight;
        }
        db::Result r =
            co_await queue_query(w, kClaim, db::params(name, free, settings.lease_seconds));
        for (int i = 0; i < r.rows(); ++i) {
          JobContext::Impl job;
          job.id = r.text(i, "id");
          job.tenant_id = r.optional(i, "tenant_id").value_or("");
          job.kind = r.text(i, "kind");
          job.token = r.text(i, "lease_token");
          job.attempt = static_cast<int>(r.get_int(i, "attempts"));
          boost::system::error_code ec;
          auto parsed = boost::json::parse(r.get(i, "payload"), ec);
          if (!ec && parsed.is_object()) job.payload = std::move(parsed.as_object());
          ++w.in_flight;
          runtime::spawn(io, run_job(w, std::move(job)), "job");
        }
        if (r.rows() == free) continue;  // there may be more
        db::Result due = co_await queue_query(w, kNextDue);
        if (!due.is_null(0, 0)) {
          idle = std::min(idle, std::chrono::milliseconds(due.get_int(0, "wait_ms") + 5));
        }
      }
      backoff = std::chrono::milliseconds(100);
    } catch (const std::exception& e) {
      log::warn("job worker cannot reach the queue", {{"error", std::string(e.what())}});
      idle = backoff;
      backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
    }
    if (w.notified) continue;
    w.wake.expires_after(idle);
    co_await w.wake.async_wait(asio::as_tuple(use_awaitable));
  }
}

void wake_workers() {
  std::lock_guard lock(g_workers_mutex);
  for (Worker* w : g_workers) {
    asio::post(w->io, [w] { notify(*w); });
  }
}

awaitable<void> enqueue_due_schedules() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  for (const Schedule& s : state().schedules) {
    auto period = std::chrono::duration_cast<std::chrono::seconds>(now).count() /
                  std::max<std::int64_t>(1, s.interval.count());
    NewJob job = jobs::job(s.kind);
    job.unique_key = fmt::format("schedule:{}:{}", s.kind, period);
    std::optional<std::string> id = co_await enqueue("", std::move(job));
    if (id) log::info("scheduled job enqueued", {{"kind", s.kind}, {"job_id", *id}});
  }
}

awaitable<void> refresh_snapshot() {
  db::Result r = co_await db::pool().query(kStats);
  QueueSnapshot snap;
  snap.valid = true;
  for (int i = 0; i < r.rows(); ++i) {
    snap.rows.push_back({r.text(i, "kind"), r.text(i, "status"), r.get_int(i, "jobs"),
                         std::stod(r.text(i, "oldest_due_seconds"))});
  }
  std::lock_guard lock(state().snapshot_mutex);
  state().snapshot = std::move(snap);
}

}  // namespace hsea::jobs
