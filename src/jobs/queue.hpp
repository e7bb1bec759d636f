#pragma once
// The jobs module's own pieces (internal): the kinds and schedules modules declared, the
// settings, the worker.
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "jobs/jobs.hpp"

namespace hsea::jobs {

struct Settings {
  int worker_threads = 1;         // HSEA_WORKER_THREADS: I/O threads of `serve` that run jobs
  int concurrency = 16;           // HSEA_WORKER_CONCURRENCY: jobs in flight per worker thread
  int lease_seconds = 30;         // HSEA_JOB_LEASE_SECONDS
  int poll_ms = 5000;             // HSEA_JOB_POLL_MS: the safety-net poll of an idle worker
  int retention_days = 14;        // HSEA_JOB_RETENTION_DAYS: finished jobs are kept this long
  int event_retention_days = 30;  // HSEA_EVENT_RETENTION_DAYS: domain events are kept this long
};

// Run-time statistics for /metrics, per kind.
struct KindStats {
  std::atomic<std::uint64_t> succeeded{0}, failed{0}, retried{0}, lost{0};
  std::atomic<std::uint64_t> buckets[12]{};  // run-time histogram (kRunBuckets)
  std::atomic<std::uint64_t> count{0};
  std::atomic<std::uint64_t> sum_us{0};
};
inline constexpr double kRunBuckets[12] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5,   1,    2.5,   5,    10,  30};

// The queue's state as of the last refresh (jobs_stats()).
struct QueueSnapshot {
  struct Row {
    std::string kind, status;
    std::int64_t jobs = 0;
    double oldest_due_seconds = 0;
  };
  std::vector<Row> rows;
  bool valid = false;
};

struct State {
  Settings settings;
  std::map<std::string, Kind> kinds;
  std::vector<Schedule> schedules;
  std::vector<EventType> event_types;
  std::vector<Subscription> subscriptions;
  std::map<std::string, std::unique_ptr<KindStats>> stats;  // one per kind, made at definition
  std::mutex snapshot_mutex;
  QueueSnapshot snapshot;
  std::string node;  // names this process in jobs.worker
  // Time paused for requests (hsea_jobs_yielded_seconds_total).
  std::atomic<std::uint64_t> yielded_us{0};
};
State& state();
const Kind* find_kind(const std::string& kind);
// define() without a registrar (the takeover of once-per-cluster tasks at start).
void add_kind(Kind kind);

// The worker of the calling I/O thread: claims and runs jobs until the runtime stops.
boost::asio::awaitable<void> run_worker(int thread_index);
// Wakes idle workers (on any thread).
void wake_workers();
// After a commit that enqueued: this process's idle workers at once, other nodes' through a
// NOTIFY sent outside the transaction (coalesced; their poll is the safety net).
void wake_after_commit();
// Every node's scheduler tick: enqueues each schedule's current period once.
boost::asio::awaitable<void> enqueue_due_schedules();
// Refreshes the queue snapshot for /metrics.
boost::asio::awaitable<void> refresh_snapshot();

void register_routes(runtime::Registrar& registrar);
void register_commands(runtime::Registrar& registrar);
void register_event_routes(runtime::Registrar& registrar);

}  // namespace hsea::jobs
