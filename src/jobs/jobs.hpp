#pragma once
// Background jobs (HSEA-038): the one way to do work later or elsewhere. A PostgreSQL-backed
// queue: a job is enqueued in the transaction of its cause (committed or rolled back with it),
// claimed by a worker with FOR UPDATE SKIP LOCKED and a lease renewed by heartbeat, run inside
// its tenant's scope (row-level security in force), retried with exponential backoff and
// jitter, and failed for good after max_attempts. Tenants are served round-robin (fair tags,
// migrations/0005_jobs.sql); idle workers wake on LISTEN/NOTIFY.
//
// A module declares the kinds of job it runs and, for periodic work, a schedule:
//   jobs::define(reg, {.kind = "audit.retention", .run = prune});
//   jobs::schedule(reg, {.kind = "audit.retention", .interval = std::chrono::hours(24)});
// and enqueues inside the transaction of the cause:
//   co_await jobs::enqueue(tx, jobs::job("mail.send", payload));
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "db/db.hpp"
#include "security/audit.hpp"

namespace boost::json {
class object;
}
namespace hsea::http {
struct RequestContext;
}
namespace hsea::runtime {
class Registrar;
}

namespace hsea::jobs {

// What a running job sees.
class JobContext {
 public:
  const std::string& id() const { return id_; }
  const std::string& tenant_id() const { return tenant_id_; }  // "" for a platform job
  const std::string& kind() const { return kind_; }
  const boost::json::object& payload() const;
  int attempt() const { return attempt_; }  // 1 on the first run
  // The job's transaction, in its tenant's scope, begun on first use. The job's completion is
  // written in it, so what the handler writes here commits exactly when the job succeeds (a
  // job that lost its lease, or failed, leaves nothing behind).
  boost::asio::awaitable<db::Transaction*> transaction();

  struct Impl;
  explicit JobContext(Impl& impl);

 private:
  Impl& impl_;
  const std::string& id_;
  const std::string& tenant_id_;
  const std::string& kind_;
  int attempt_;
};

using Handler = std::function<boost::asio::awaitable<void>(JobContext&)>;

// The wait before retry `attempt` (1 after the first failure).
using Backoff = std::function<std::chrono::milliseconds(int attempt)>;
// 5 s doubling up to 1 h, each wait drawn from [50%, 100%] of its step (jitter).
std::chrono::milliseconds default_backoff(int attempt);

struct Kind {
  std::string kind;  // "mail.send": lower case, digits, . _ -
  Handler run;
  int priority = 0;  // -100..100; higher runs first
  int max_attempts = 10;
  std::chrono::seconds timeout{60};  // past it the handler is cancelled and the attempt fails
  Backoff backoff = default_backoff;
};

// A platform job enqueued once per `interval` across every node: the period's index is the
// job's unique key, so nodes whose timers fire together enqueue it once.
struct Schedule {
  std::string kind;
  std::chrono::seconds interval{86400};
};

// Declared at registration (after jobs::Register).
void define(runtime::Registrar& registrar, Kind kind);
void schedule(runtime::Registrar& registrar, Schedule schedule);

struct NewJob {
  std::string kind;
  std::string payload = "{}";   // a JSON object
  std::optional<int> priority;  // default: the kind's
  std::chrono::milliseconds delay{0};
  std::optional<int> max_attempts;  // default: the kind's
  std::string unique_key;           // non-empty: at most one job with this key per tenant
};
// Build NewJob values with this, not as braced temporaries inside co_await (g++ 12).
inline NewJob job(std::string kind, std::string payload = "{}") {
  NewJob j;
  j.kind = std::move(kind);
  j.payload = std::move(payload);
  return j;
}

// Inside the transaction of its cause, for that transaction's tenant (none: a platform job).
// Returns the job's id, or nullopt when its unique_key already exists. Throws
// std::logic_error for a kind nobody defined.
boost::asio::awaitable<std::optional<std::string>> enqueue(db::Transaction& tx, NewJob job);
// In a transaction of its own; tenant_id "" enqueues a platform job.
boost::asio::awaitable<std::optional<std::string>> enqueue(std::string tenant_id, NewJob job);
// Many jobs of one kind for one tenant in one statement (consecutive fair tags).
boost::asio::awaitable<std::int64_t> enqueue_many(db::Transaction& tx, std::string kind,
                                                  std::vector<std::string> payloads);

// ------------------------------------------------------------------ the outbox (events)
//
// Every domain event is written in the transaction of the change that causes it, and the jobs
// of the modules that react to it are enqueued in that same transaction: an event exists
// exactly when its change committed, and its consequences (webhook deliveries, e-mail) are
// never lost.

struct EventType {
  std::string type;  // "member.role_changed": dotted lower-case words
  std::string description;
};
// Declares an event type a module emits (listed by GET /api/events/types, offered to webhook
// endpoints).
void event_type(runtime::Registrar& registrar, EventType type);
// Every declared type, in declaration order.
const std::vector<EventType>& event_types();

// A job kind run once for each committed event of `types` (empty: every type), with the
// payload {"event_id": ..., "type": ...}, in the event's tenant.
struct Subscription {
  std::string kind;
  std::vector<std::string> types;
};
void subscribe(runtime::Registrar& registrar, Subscription subscription);

// Writes the event in the transaction's tenant and enqueues its subscribers' jobs there;
// returns its id. `data` is a JSON object (never a secret). Throws std::logic_error for an
// undeclared type.
boost::asio::awaitable<std::string> emit(db::Transaction& tx, const http::RequestContext& ctx,
                                         std::string type, std::string data = "{}");
boost::asio::awaitable<std::string> emit(db::Transaction& tx, security::Actor actor,
                                         std::string request_id, std::string type,
                                         std::string data = "{}");

struct Event {
  std::string id, type, data, actor_type, actor_id, request_id, created_at;
};
// The event a subscriber's job was enqueued for (read in the job's tenant), or nullopt when it
// is gone (pruned, or its tenant was deleted).
boost::asio::awaitable<std::optional<Event>> event_of(JobContext& job);

// The jobs module: the worker on HSEA_WORKER_THREADS I/O threads (serve) or every thread
// (worker), the scheduler, GET /api/jobs with retry and cancel, `hsea jobs ...`, metrics.
void Register(runtime::Registrar& registrar);

}  // namespace hsea::jobs
