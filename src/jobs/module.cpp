// The jobs module's registration: kinds and schedules, the workers and their wake-up
// listener, the scheduler tick, metrics, routes and commands.
#include <fmt/format.h>
#include <boost/asio/io_context.hpp>

#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "jobs/queue.hpp"
#include "runtime/registrar.hpp"

namespace hsea::jobs {
namespace {

State* g_state = nullptr;

HSEA_QUERY kPrune{"jobs_prune", "SELECT jobs_prune($1) AS jobs, events_prune($2) AS events"};

const core::Section<Settings> kSettings{
    "jobs",
    {core::int_setting(&Settings::worker_threads, "HSEA_WORKER_THREADS", "1", 0, 256,
                       "I/O threads of `hsea serve` that also run jobs (0: none; `hsea worker` "
                       "uses every thread)"),
     core::int_setting(&Settings::concurrency, "HSEA_WORKER_CONCURRENCY", "16", 1, 1000,
                       "jobs in flight per worker thread"),
     core::int_setting(&Settings::lease_seconds, "HSEA_JOB_LEASE_SECONDS", "30", 2, 3600,
                       "a running job's lease, renewed every third of it; a job whose worker "
                       "died runs again after it"),
     core::int_setting(&Settings::poll_ms, "HSEA_JOB_POLL_MS", "5000", 50, 600000,
                       "an idle worker's safety-net poll (it wakes on NOTIFY at once)"),
     core::int_setting(&Settings::retention_days, "HSEA_JOB_RETENTION_DAYS", "14", 1, 3650,
                       "finished and failed jobs are kept this long"),
     core::int_setting(&Settings::event_retention_days, "HSEA_EVENT_RETENTION_DAYS", "30", 1, 3650,
                       "domain events (GET /api/events) are kept this long")}};

void render(std::string& out) {
  State& s = state();
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP hsea_jobs Jobs waiting (queued) and running, by kind.\n"
                 "# TYPE hsea_jobs gauge\n");
  double lag = 0;
  {
    std::lock_guard lock(s.snapshot_mutex);
    for (const auto& row : s.snapshot.rows) {
      fmt::format_to(it, "hsea_jobs{{kind=\"{}\",status=\"{}\"}} {}\n", row.kind, row.status,
                     row.jobs);
      lag = std::max(lag, row.oldest_due_seconds);
    }
  }
  fmt::format_to(it,
                 "# HELP hsea_jobs_queue_lag_seconds How long the oldest due job has waited.\n"
                 "# TYPE hsea_jobs_queue_lag_seconds gauge\n"
                 "hsea_jobs_queue_lag_seconds {}\n",
                 lag);
  fmt::format_to(it,
                 "# HELP hsea_jobs_yielded_seconds_total Time this process's workers paused "
                 "before a claim because the thread was serving requests.\n"
                 "# TYPE hsea_jobs_yielded_seconds_total counter\n"
                 "hsea_jobs_yielded_seconds_total {}\n",
                 static_cast<double>(s.yielded_us.load(std::memory_order_relaxed)) / 1e6);
  fmt::format_to(
      it,
      "# HELP hsea_jobs_runs_total Job attempts run by this process, by kind and outcome.\n"
      "# TYPE hsea_jobs_runs_total counter\n");
  for (const auto& [kind, st] : s.stats) {
    for (auto [outcome, n] :
         {std::pair{"succeeded", st->succeeded.load()}, std::pair{"failed", st->failed.load()},
          std::pair{"retried", st->retried.load()}, std::pair{"lease_lost", st->lost.load()}}) {
      fmt::format_to(it, "hsea_jobs_runs_total{{kind=\"{}\",outcome=\"{}\"}} {}\n", kind, outcome,
                     n);
    }
  }
  fmt::format_to(it,
                 "# HELP hsea_job_run_seconds Run time of job attempts, by kind.\n"
                 "# TYPE hsea_job_run_seconds histogram\n");
  for (const auto& [kind, st] : s.stats) {
    for (std::size_t i = 0; i < std::size(kRunBuckets); ++i) {
      fmt::format_to(it, "hsea_job_run_seconds_bucket{{kind=\"{}\",le=\"{}\"}} {}\n", kind,
                     kRunBuckets[i], st->buckets[i].load());
    }
    fmt::format_to(it, "hsea_job_run_seconds_bucket{{kind=\"{}\",le=\"+Inf\"}} {}\n", kind,
                   st->count.load());
    fmt::format_to(it, "hsea_job_run_seconds_sum{{kind=\"{}\"}} {}\n", kind,
                   st->sum_us.load() / 1e6);
    fmt::format_to(it, "hsea_job_run_seconds_count{{kind=\"{}\"}} {}\n", kind, st->count.load());
  }
}

boost::asio::awaitable<void> prune(JobContext&) {
  const Settings& settings = state().settings;
  db::Result r = co_await db::pool().query(
      kPrune, db::params(settings.retention_days, settings.event_retention_days));
  if (r.get_int(0, "jobs") > 0 || r.get_int(0, "events") > 0) {
    log::info("old jobs and events pruned",
              {{"jobs", r.get_int(0, "jobs")}, {"events", r.get_int(0, "events")}});
  }
}

}  // namespace

State& state() {
  if (g_state == nullptr) throw std::logic_error("the jobs module is not registered");
  return *g_state;
}

const Kind* find_kind(const std::string& kind) {
  auto it = state().kinds.find(kind);
  return it == state().kinds.end() ? nullptr : &it->second;
}

void define(runtime::Registrar&, Kind kind) { add_kind(std::move(kind)); }

void add_kind(Kind kind) {
  State& s = state();
  if (kind.priority < -100 || kind.priority > 100 || kind.max_attempts < 1 ||
      kind.max_attempts > 100 || !kind.run) {
    throw std::logic_error("job kind " + kind.kind + ": bad priority, attempts or handler");
  }
  if (!s.kinds.emplace(kind.kind, kind).second) {
    throw std::logic_error("job kind " + kind.kind + " is defined twice");
  }
  s.stats.emplace(kind.kind, std::make_unique<KindStats>());
}

void schedule(runtime::Registrar&, Schedule schedule) {
  if (find_kind(schedule.kind) == nullptr) {
    throw std::logic_error("schedule of an undefined job kind " + schedule.kind);
  }
  state().schedules.push_back(std::move(schedule));
}

namespace {

// Once-per-cluster periodic tasks of any module become platform jobs: kind "periodic.<name>",
// one per period.
void take_over_cluster_tasks(runtime::Application& app) {
  std::vector<runtime::PeriodicTask> kept;
  for (runtime::PeriodicTask& task : app.tasks) {
    if (!task.once_per_cluster) {
      kept.push_back(std::move(task));
      continue;
    }
    std::string kind = "periodic." + task.name;
    if (find_kind(kind) == nullptr) {
      add_kind({.kind = kind,
                .run = [run = task.run](JobContext&) { return run(); },
                .max_attempts = 5,
                .timeout = std::chrono::minutes(30)});
      state().schedules.push_back({.kind = kind, .interval = task.interval});
    }
  }
  app.tasks = std::move(kept);
}

}  // namespace

void Register(runtime::Registrar& reg) {
  g_state = &reg.process(std::make_unique<State>());
  g_state->settings = reg.settings(kSettings);
  g_state->node = core::random_hex(4);  // names this process in jobs.worker

  // Workers: on HSEA_WORKER_THREADS threads of `serve`, on every thread of `worker`. One
  // LISTEN connection per process wakes them when a job commits.
  reg.on_start([](runtime::Application& app, runtime::Runtime* rt) {
    take_over_cluster_tasks(app);
    if (rt == nullptr || app.role == runtime::Role::kCommand) return;
    int threads = app.role == runtime::Role::kWorker
                      ? rt->threads()
                      : std::min(state().settings.worker_threads, rt->threads());
    for (int i = 0; i < threads; ++i) {
      rt->post(i, [i] {
        runtime::spawn(runtime::ThreadContext::current()->io(), run_worker(i), "job worker");
      });
    }
    if (threads == 0) return;
    rt->post(0, [] {
      runtime::spawn(runtime::ThreadContext::current()->io(),
                     db::listen(db::pool().options(), "hsea_jobs", wake_workers), "job listener");
    });
  });
  // Every node ticks; the period's unique key lets one job per period through.
  reg.periodic({.name = "job-scheduler",
                .interval = std::chrono::seconds(10),
                .first_delay = std::chrono::seconds(1),
                .run = [] { return enqueue_due_schedules(); }});
  reg.periodic({.name = "job-metrics",
                .interval = std::chrono::seconds(10),
                .first_delay = std::chrono::seconds(1),
                .run = [] { return refresh_snapshot(); }});
  reg.metrics(render);

  define(reg, {.kind = "jobs.prune", .run = prune, .max_attempts = 3});
  // Does nothing: `hsea jobs ping` measures the queue's round trip with it (and benchmarks
  // measure the queue's own cost).
  define(reg, {.kind = "jobs.ping",
               .run = [](JobContext&) -> boost::asio::awaitable<void> { co_return; }});
  schedule(reg, {.kind = "jobs.prune", .interval = std::chrono::hours(24)});

  register_routes(reg);
  register_event_routes(reg);
  register_commands(reg);
}

}  // namespace hsea::jobs
