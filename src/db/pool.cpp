#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <deque>
#include <unordered_set>

#include "core/log.hpp"
#include "db/db.hpp"

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace hsea::db {

// ---------------------------------------------------------------------------------- Result

Result::Result(pg_result* result) : result_(result) {}
Result::~Result() {
  if (result_ != nullptr) PQclear(result_);
}
Result::Result(Result&& other) noexcept : result_(std::exchange(other.result_, nullptr)) {}
Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    if (result_ != nullptr) PQclear(result_);
    result_ = std::exchange(other.result_, nullptr);
  }
  return *this;
}
int Result::rows() const { return result_ ? PQntuples(result_) : 0; }
int Result::columns() const { return result_ ? PQnfields(result_) : 0; }
std::int64_t Result::affected() const {
  if (!result_) return 0;
  const char* n = PQcmdTuples(result_);
  return (n && *n) ? std::stoll(n) : 0;
}
int Result::column(std::string_view name) const {
  int n = columns();
  for (int i = 0; i < n; ++i) {
    if (name == PQfname(result_, i)) return i;
  }
  throw std::out_of_range("no column " + std::string(name));
}
bool Result::is_null(int row, int col) const { return PQgetisnull(result_, row, col) != 0; }
std::string_view Result::get(int row, int col) const {
  if (row < 0 || row >= rows() || col < 0 || col >= columns()) {
    throw std::out_of_range("row or column out of range");
  }
  return {PQgetvalue(result_, row, col), static_cast<std::size_t>(PQgetlength(result_, row, col))};
}
std::optional<std::string> Result::optional(int row, std::string_view name) const {
  int col = column(name);
  if (is_null(row, col)) return std::nullopt;
  return std::string(get(row, col));
}
std::int64_t Result::get_int(int row, std::string_view name) const {
  return std::stoll(std::string(get(row, column(name))));
}
bool Result::get_bool(int row, std::string_view name) const { return get(row, name) == "t"; }
std::vector<std::string> Result::words(int row, std::string_view name) const {
  std::string_view text = get(row, name);
  std::vector<std::string> out;
  if (text.size() >= 2) text = text.substr(1, text.size() - 2);
  while (!text.empty()) {
    auto comma = text.find(',');
    out.emplace_back(text.substr(0, comma));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string Result::time(int row, std::string_view name) const {
  std::string out(get(row, name));
  if (out.size() > 10 && out[10] == ' ') out[10] = 'T';
  if (out.ends_with("+00")) {
    out.replace(out.size() - 3, 3, "Z");
  } else if (out.size() > 3 && (out[out.size() - 3] == '+' || out[out.size() - 3] == '-')) {
    out += ":00";
  }
  return out;
}

// ------------------------------------------------------------------------------ Connection

namespace {

// Errors raised by the client side, with PostgreSQL-style codes so one mapping serves all.
constexpr const char* kConnectionFailure = "08006";
constexpr const char* kCannotConnect = "08001";
constexpr const char* kPoolExhausted = "53300";
constexpr const char* kTimedOut = "57014";

Error error_from_result(PGresult* res, const char* query) {
  const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char* message = PQresultErrorMessage(res);
  const char* constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
  return Error(state ? state : "XX000", message ? message : "unknown error",
               constraint ? constraint : "", query ? query : "");
}

struct Step {
  enum class Kind { kControl, kPrepare, kStatement, kSync } kind;
  std::string prepared_name;  // kPrepare
  const char* label = "";     // the named query, or the control statement's SQL (for errors)
};

}  // namespace

class Connection {
 public:
  explicit Connection(asio::io_context& io) : socket_(io), deadline_(io) {}
  ~Connection() { close(); }

  awaitable<void> connect(const PoolOptions& options) {
    // UTC so timestamps read back as RFC 3339 (Result::time).
    std::string statement_timeout =
        "-c statement_timeout=" + std::to_string(options.statement_timeout.count()) +
        " -c TimeZone=UTC";
    const char* keys[] = {"dbname", "application_name", "options", nullptr};
    const char* values[] = {options.url.c_str(), "hsea", statement_timeout.c_str(), nullptr};
    pg_ = PQconnectStartParams(keys, values, 1);
    if (pg_ == nullptr || PQstatus(pg_) == CONNECTION_BAD) {
      throw Error(kCannotConnect, pg_ ? PQerrorMessage(pg_) : "out of memory");
    }
    arm_deadline(options.connect_timeout);
    PostgresPollingStatusType status = PGRES_POLLING_WRITING;
    while (status != PGRES_POLLING_OK) {
      if (status == PGRES_POLLING_FAILED) {
        throw Error(kCannotConnect, PQerrorMessage(pg_));
      }
      track_socket();
      co_await wait(status == PGRES_POLLING_READING ? asio::posix::descriptor_base::wait_read
                                                    : asio::posix::descriptor_base::wait_write,
                    kCannotConnect);
      status = PQconnectPoll(pg_);
    }
    ++deadline_generation_;
    deadline_.cancel();
    track_socket();
    if (PQsetnonblocking(pg_, 1) != 0 || PQenterPipelineMode(pg_) != 1) {
      throw Error(kCannotConnect, PQerrorMessage(pg_));
    }
  }

  // True when the connection can take work: still open and nothing unread on it.
  bool usable() {
    if (pg_ == nullptr || in_flight_ || PQstatus(pg_) != CONNECTION_OK) return false;
    // An idle connection has nothing to say. Anything readable is the server closing it
    // (restart, pg_terminate_backend, idle timeout): do not hand it out.
    pollfd p{PQsocket(pg_), POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) == 0;
  }
  bool in_flight() const { return in_flight_; }

  // Holds written data in the kernel until uncorked (TCP only; a Unix socket ignores it).
  void cork(bool on) {
    if (on == corked_) return;
    int value = on ? 1 : 0;
    corked_ = on;
    ::setsockopt(PQsocket(pg_), IPPROTO_TCP, TCP_CORK, &value, sizeof value);
  }
  std::uint64_t take_round_trips() { return std::exchange(round_trips_, 0); }

  // Sends queued steps, ended by Sync (end of a transaction) or a flush request (mid
  // transaction), and returns the results of the statements in order. On a statement error
  // the pipeline is re-synchronised and the error thrown.
  awaitable<std::vector<Result>> round_trip(bool sync, std::chrono::milliseconds timeout) {
    in_flight_ = true;
    ++round_trips_;
    if (sync) {
      if (PQpipelineSync(pg_) != 1) throw broken();
    } else if (PQsendFlushRequest(pg_) != 1) {
      throw broken();
    }
    arm_deadline(timeout);
    co_await flush();
    std::vector<Result> results;
    std::optional<Error> first_error;
    for (const Step& step : steps_) {
      std::optional<Result> result = co_await read_step(step, first_error);
      if (result) results.push_back(std::move(*result));
    }
    steps_.clear();
    if (first_error && !sync) {
      if (PQpipelineSync(pg_) != 1) throw broken();
      co_await flush();
      sync = true;
    }
    if (sync) {
      PGresult* raw = co_await next_result();
      Result res(raw);
      if (raw == nullptr || PQresultStatus(raw) != PGRES_PIPELINE_SYNC) throw broken();
    }
    ++deadline_generation_;
    deadline_.cancel();
    in_flight_ = false;
    if (first_error) throw *first_error;
    co_return results;
  }

  // The outcome of one Sync-terminated segment of a batch: its statement's result or error.
  struct Outcome {
    Result result;
    std::optional<Error> error;
  };

  // Ends the queued steps as one segment: an implicit transaction of its own, whose error
  // aborts only itself.
  void queue_sync() {
    if (PQpipelineSync(pg_) != 1) throw broken();
    steps_.push_back({Step::Kind::kSync, {}, "sync"});
  }

  // Sends the queued segments (each ended by queue_sync) in one round trip and returns one
  // outcome per segment, in order. Throws only when the connection itself fails; it is then
  // left in flight and never reused.
  awaitable<std::vector<Outcome>> round_trip_segments(std::chrono::milliseconds timeout) {
    in_flight_ = true;
    ++round_trips_;
    arm_deadline(timeout);
    co_await flush();
    std::vector<Outcome> outcomes;
    Outcome current;
    for (const Step& step : steps_) {
      if (step.kind == Step::Kind::kSync) {
        PGresult* raw = co_await next_result();
        Result sync(raw);
        if (raw == nullptr || PQresultStatus(raw) != PGRES_PIPELINE_SYNC) throw broken();
        outcomes.push_back(std::move(current));
        current = Outcome{};
        continue;
      }
      std::optional<Result> result = co_await read_step(step, current.error);
      if (result) current.result = std::move(*result);
    }
    steps_.clear();
    ++deadline_generation_;
    deadline_.cancel();
    in_flight_ = false;
    co_return outcomes;
  }

  void queue_control(const char* sql, const Params& params = {}) {
    send_params(nullptr, sql, params);
    steps_.push_back({Step::Kind::kControl, {}, sql});
  }
  void queue_statement(const Query& query, const Params& params) {
    prepare(query);
    send_params(query.name, nullptr, params);
    steps_.push_back({Step::Kind::kStatement, {}, query.name});
  }
  // A named statement whose result nobody reads (the scope's settings).
  void queue_control(const Query& query, const Params& params) {
    prepare(query);
    send_params(query.name, nullptr, params);
    steps_.push_back({Step::Kind::kControl, {}, query.name});
  }

  // For a connection that LISTENs: waits until notifications arrive and returns how many
  // (0 for other traffic); throws when the connection breaks. No deadline: it waits until
  // something comes or the caller is cancelled.
  awaitable<int> wait_notifications() {
    co_await wait(asio::posix::descriptor_base::wait_read, kConnectionFailure);
    if (PQconsumeInput(pg_) == 0) throw broken();
    int count = 0;
    while (PGnotify* n = PQnotifies(pg_)) {
      ++count;
      PQfreemem(n);
    }
    in_flight_ = false;
    co_return count;
  }

  // A transaction left open (error, or abandoned without commit): the pool sends ROLLBACK
  // when the connection comes back (Pool::release), before anyone else can use it.
  bool needs_rollback = false;

 private:
  // Reads one step's results up to its end: the first error (unless one is already kept) goes
  // to `error`; a statement's result is returned.
  awaitable<std::optional<Result>> read_step(const Step& step, std::optional<Error>& error) {
    std::optional<Result> captured;
    while (PGresult* raw = co_await next_result()) {
      Result res(raw);
      auto status = PQresultStatus(raw);
      bool ok = status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK;
      if (!ok && status != PGRES_PIPELINE_ABORTED && !error) {
        error = error_from_result(raw, step.label);
      }
      if (step.kind == Step::Kind::kPrepare && !ok) prepared_.erase(step.prepared_name);
      if (step.kind == Step::Kind::kStatement && !captured) captured = std::move(res);
    }
    co_return captured;
  }

  // Once per connection: later uses send only the name and parameters, and the server skips
  // parsing and planning.
  void prepare(const Query& query) {
    if (prepared_.contains(query.name)) return;
    if (PQsendPrepare(pg_, query.name, query.sql, 0, nullptr) != 1) throw broken();
    prepared_.insert(query.name);
    steps_.push_back({Step::Kind::kPrepare, query.name, query.name});
  }

  void send_params(const char* prepared_name, const char* sql, const Params& params) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
    int n = static_cast<int>(values.size());
    int ok = prepared_name
                 ? PQsendQueryPrepared(pg_, prepared_name, n, values.data(), nullptr, nullptr, 0)
                 : PQsendQueryParams(pg_, sql, n, nullptr, values.data(), nullptr, nullptr, 0);
    if (ok != 1) throw broken();
  }

  Error broken() {
    in_flight_ = true;  // never reuse
    return Error(kConnectionFailure, pg_ ? PQerrorMessage(pg_) : "connection closed");
  }

  void track_socket() {
    int fd = PQsocket(pg_);
    if (fd == tracked_fd_) return;
    if (socket_.is_open()) socket_.release();
    tracked_fd_ = -1;
    if (fd >= 0) {
      socket_.assign(fd);
      tracked_fd_ = fd;
    }
  }

  // The deadline cancels the socket wait; a flag tells a deadline from the caller's own
  // cancellation.
  void arm_deadline(std::chrono::milliseconds timeout) {
    deadline_hit_ = false;
    deadline_.expires_after(timeout);
    // A handler already queued for an earlier deadline must not cancel this operation.
    unsigned generation = ++deadline_generation_;
    deadline_.async_wait([this, generation](boost::system::error_code ec) {
      // Cancelled: the operation finished, or the connection is going away.
      if (ec || generation != deadline_generation_) return;
      deadline_hit_ = true;
      boost::system::error_code ignored;
      socket_.cancel(ignored);
    });
  }

  awaitable<void> wait(asio::posix::descriptor_base::wait_type type, const char* error_state) {
    auto [ec] = co_await socket_.async_wait(type, asio::as_tuple(use_awaitable));
    if (!ec) co_return;
    in_flight_ = true;
    if (deadline_hit_) {
      // A slow connect means the database is unreachable (503); a slow statement, 504.
      throw Error(error_state == kCannotConnect ? kCannotConnect : kTimedOut,
                  "database deadline passed");
    }
    if (ec == asio::error::operation_aborted) throw boost::system::system_error(ec);
    throw Error(error_state, ec.message());
  }

  awaitable<void> flush() {
    while (true) {
      int r = PQflush(pg_);
      if (r == 0) co_return;
      if (r < 0) throw broken();
      co_await wait(asio::posix::descriptor_base::wait_write, kConnectionFailure);
      if (PQconsumeInput(pg_) == 0) throw broken();
    }
  }

  awaitable<PGresult*> next_result() {
    while (PQisBusy(pg_)) {
      co_await wait(asio::posix::descriptor_base::wait_read, kConnectionFailure);
      if (PQconsumeInput(pg_) == 0) throw broken();
    }
    co_return PQgetResult(pg_);
  }

  void close() {
    deadline_.cancel();
    if (socket_.is_open()) socket_.release();
    if (pg_ != nullptr) PQfinish(pg_);
    pg_ = nullptr;
  }

  PGconn* pg_ = nullptr;
  asio::posix::stream_descriptor socket_;
  int tracked_fd_ = -1;
  asio::steady_timer deadline_;
  bool deadline_hit_ = false;
  unsigned deadline_generation_ = 0;
  bool in_flight_ = false;
  bool corked_ = false;
  std::uint64_t round_trips_ = 0;
  std::vector<Step> steps_;
  std::unordered_set<std::string> prepared_;
};

// ------------------------------------------------------------------------------------ Pool

namespace {
HSEA_QUERY kScopeTenantAndUser{
    "hsea_scope_tenant_user",
    "SELECT set_config('app.tenant_id', $1, true), set_config('app.user_id', $2, true)"};
HSEA_QUERY kScopeTenant{"hsea_scope_tenant", "SELECT set_config('app.tenant_id', $1, true)"};
HSEA_QUERY kScopeUser{"hsea_scope_user", "SELECT set_config('app.user_id', $1, true)"};

// The scope's settings, local to the transaction they are sent in.
void queue_scope(Connection& conn, const Scope& scope) {
  if (!scope.tenant_id.empty() && !scope.user_id.empty()) {
    conn.queue_control(kScopeTenantAndUser, params(scope.tenant_id, scope.user_id));
  } else if (!scope.tenant_id.empty()) {
    conn.queue_control(kScopeTenant, params(scope.tenant_id));
  } else if (!scope.user_id.empty()) {
    conn.queue_control(kScopeUser, params(scope.user_id));
  }
}

void queue_begin(Connection& conn, const Scope& scope) {
  conn.queue_control("BEGIN");
  queue_scope(conn, scope);
}

std::chrono::milliseconds round_trip_deadline(const PoolOptions& options) {
  return options.statement_timeout + std::chrono::milliseconds(1000);
}
}  // namespace

struct Pool::Impl {
  Impl(asio::io_context& io_context, PoolOptions opts) : io(io_context), options(std::move(opts)) {}

  struct Waiter {
    explicit Waiter(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    std::unique_ptr<Connection> conn;
    bool may_connect = false;  // a slot was freed: the waiter may open a connection
    std::uint64_t sequence = 0;
  };

  // A one-statement read or write (query, tenant_query, scoped_query) waiting to be sent. The
  // runner that claims it holds it too, so a caller that leaves (cancelled) leaves its reply to
  // be read and dropped, not to reach anyone else.
  struct OneShot {
    OneShot(asio::io_context& io, Scope s, const Query& q, Params p)
        : timer(io), scope(std::move(s)), query(&q), params(std::move(p)) {}
    asio::steady_timer timer;  // the caller waits on it; the runner cancels it when done
    Scope scope;
    const Query* query;
    Params params;
    std::uint64_t sequence = 0;
    bool claimed = false;
    bool done = false;
    Result result;
    std::exception_ptr error;
  };

  asio::io_context& io;
  PoolOptions options;
  std::vector<std::unique_ptr<Connection>> idle;
  std::deque<Waiter*> waiters;
  std::deque<std::shared_ptr<OneShot>> one_shots;  // not yet claimed, oldest first
  int runners = 0;                                 // connections sending batches of one-shots
  // When the latest batch was sent (by any runner), and a timer that looks again when that
  // batch has been out for options.batch_stall while one-shots still wait.
  std::chrono::steady_clock::time_point newest_send{};
  asio::steady_timer stall_timer{io};
  bool stall_timer_armed = false;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);  // for the timer's handler
  int starting = 0;                 // runners started that have not yet claimed their first batch
  std::uint64_t next_sequence = 0;  // arrival order of waiters and one-shots
  int open = 0;                     // connections that exist or are being opened
  bool closed = false;

  std::atomic<int> in_use{0};
  std::atomic<int> idle_count{0};
  std::atomic<int> waiting{0};
  std::atomic<std::uint64_t> waits_total{0};
  std::atomic<std::uint64_t> wait_timeouts_total{0};
  std::atomic<std::uint64_t> connects_total{0};
  std::atomic<std::uint64_t> broken_total{0};
  std::atomic<std::uint64_t> round_trips_total{0};
  std::atomic<std::uint64_t> batches_total{0};
  std::atomic<std::uint64_t> batched_total{0};
  std::atomic<std::uint64_t> abandoned_total{0};

  void update_gauges() {
    idle_count.store(static_cast<int>(idle.size()), std::memory_order_relaxed);
    in_use.store(open - static_cast<int>(idle.size()), std::memory_order_relaxed);
    waiting.store(static_cast<int>(waiters.size() + one_shots.size()), std::memory_order_relaxed);
  }
};

Pool::Pool(asio::io_context& io, PoolOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))) {}

Pool::~Pool() = default;

void Pool::close() {
  impl_->closed = true;
  impl_->stall_timer.cancel();
  impl_->open -= static_cast<int>(impl_->idle.size());
  impl_->idle.clear();
  impl_->update_gauges();
}

const PoolOptions& Pool::options() const { return impl_->options; }

PoolStats Pool::stats() const {
  PoolStats s;
  s.in_use = impl_->in_use.load(std::memory_order_relaxed);
  s.idle = impl_->idle_count.load(std::memory_order_relaxed);
  s.waiting = impl_->waiting.load(std::memory_order_relaxed);
  s.waits_total = impl_->waits_total.load(std::memory_order_relaxed);
  s.wait_timeouts_total = impl_->wait_timeouts_total.load(std::memory_order_relaxed);
  s.connects_total = impl_->connects_total.load(std::memory_order_relaxed);
  s.broken_total = impl_->broken_total.load(std::memory_order_relaxed);
  s.round_trips_total = impl_->round_trips_total.load(std::memory_order_relaxed);
  s.batches_total = impl_->batches_total.load(std::memory_order_relaxed);
  s.batched_total = impl_->batched_total.load(std::memory_order_relaxed);
  s.abandoned_total = impl_->abandoned_total.load(std::memory_order_relaxed);
  return s;
}

awaitable<std::unique_ptr<Connection>> Pool::acquire() {
  Impl& p = *impl_;
  bool may_connect = false;
  while (true) {
    while (!p.idle.empty()) {
      std::unique_ptr<Connection> conn = std::move(p.idle.back());
      p.idle.pop_back();
      if (conn->usable()) {
        p.update_gauges();
        co_return conn;
      }
      --p.open;
      p.broken_total.fetch_add(1, std::memory_order_relaxed);
    }
    if (p.open < p.options.size || may_connect) {
      if (!may_connect) ++p.open;
      may_connect = false;
      p.update_gauges();
      auto conn = std::make_unique<Connection>(p.io);
      try {
        co_await conn->connect(p.options);
      } catch (...) {
        release(nullptr);  // gives the slot back (and to a waiter, if any)
        throw;
      }
      p.connects_total.fetch_add(1, std::memory_order_relaxed);
      co_return conn;
    }
    Impl::Waiter waiter(p.io);
    waiter.sequence = p.next_sequence++;
    waiter.timer.expires_after(p.options.acquire_timeout);
    p.waiters.push_back(&waiter);
    p.waits_total.fetch_add(1, std::memory_order_relaxed);
    p.update_gauges();
    auto [ec] = co_await waiter.timer.async_wait(asio::as_tuple(use_awaitable));
    std::erase(p.waiters, &waiter);
    p.update_gauges();
    if (waiter.conn) co_return std::move(waiter.conn);
    if (waiter.may_connect) {
      may_connect = true;
      continue;
    }
    if (!ec) {
      p.wait_timeouts_total.fetch_add(1, std::memory_order_relaxed);
      throw Error(kPoolExhausted, "no database connection free within the acquire deadline");
    }
    throw boost::system::system_error(ec);  // the caller was cancelled
  }
}

struct Pool::Lease {
  Lease(Pool* p, std::unique_ptr<Connection> c) : pool(p), conn(std::move(c)) {}
  Lease(Lease&&) noexcept = default;
  ~Lease() {
    if (conn) pool->release(std::move(conn));
  }
  Pool* pool;
  std::unique_ptr<Connection> conn;
};

// A transaction left open holds its locks until ROLLBACK: send it now, not at the next use.
awaitable<void> Pool::roll_back_and_release(Lease lease, std::chrono::milliseconds timeout) {
  try {
    lease.conn->needs_rollback = false;
    lease.conn->queue_control("ROLLBACK");
    co_await lease.conn->round_trip(true, timeout);
  } catch (const std::exception&) {
    // A failed rollback leaves the connection in flight: release drops it.
  }
}

void Pool::release(std::unique_ptr<Connection> conn) {
  Impl& p = *impl_;
  if (conn && conn->needs_rollback && !conn->in_flight() && !p.closed) {
    asio::co_spawn(
        p.io,
        roll_back_and_release(Lease(this, std::move(conn)),
                              p.options.statement_timeout + std::chrono::seconds(1)),
        [](std::exception_ptr e) { log::escaped(e, "rollback of an abandoned transaction"); });
    return;
  }
  if (conn) p.round_trips_total.fetch_add(conn->take_round_trips(), std::memory_order_relaxed);
  bool reusable = conn && !p.closed && !conn->in_flight();
  if (conn && !reusable) p.broken_total.fetch_add(1, std::memory_order_relaxed);
  if (!reusable) {
    conn.reset();  // dropping a connection with unread replies is the only safe drain
    if (!p.waiters.empty()) {
      Impl::Waiter* w = p.waiters.front();
      p.waiters.pop_front();
      w->may_connect = true;  // keeps the slot: the waiter opens the replacement
      w->timer.cancel();
    } else {
      --p.open;
      start_runners();  // waiting one-shots may open the freed slot
    }
  } else if (!p.one_shots.empty() && p.runners < p.options.batch_connections &&
             (p.waiters.empty() || p.one_shots.front()->sequence < p.waiters.front()->sequence) &&
             batches_stalled()) {
    start_runner(std::move(conn));
  } else if (!p.waiters.empty()) {
    Impl::Waiter* w = p.waiters.front();
    p.waiters.pop_front();
    w->conn = std::move(conn);
    w->timer.cancel();
  } else {
    p.idle.push_back(std::move(conn));
  }
  p.update_gauges();
}

void Pool::start_runner(std::unique_ptr<Connection> conn) {
  Impl& p = *impl_;
  ++p.runners;
  ++p.starting;
  asio::co_spawn(p.io, run_one_shots(std::move(conn)),
                 [](std::exception_ptr e) { log::escaped(e, "database batch runner"); });
}

// Another runner is worth a connection only when the ones running are held up: their latest
// batch has been out for batch_stall. Until then the waiting one-shots ride the next batch.
bool Pool::batches_stalled() {
  Impl& p = *impl_;
  if (p.runners == 0) return true;
  auto ready_at = p.newest_send + p.options.batch_stall;
  if (std::chrono::steady_clock::now() >= ready_at) return true;
  if (!p.stall_timer_armed) {
    p.stall_timer_armed = true;
    p.stall_timer.expires_at(ready_at);
    p.stall_timer.async_wait(
        [this, alive = std::weak_ptr<bool>(p.alive)](boost::system::error_code ec) {
          if (ec || alive.expired()) return;
          impl_->stall_timer_armed = false;
          start_runners();
        });
  }
  return false;
}

// Starts runners while one-shots wait, runner slots are free and a connection is at hand (idle,
// or a slot to open one).
void Pool::start_runners() {
  Impl& p = *impl_;
  // A runner that has not claimed yet will take everything waiting.
  while (!p.one_shots.empty() && p.runners < p.options.batch_connections && p.starting == 0 &&
         !p.closed && batches_stalled()) {
    std::unique_ptr<Connection> conn;
    while (!p.idle.empty() && !conn) {
      conn = std::move(p.idle.back());
      p.idle.pop_back();
      if (!conn->usable()) {
        conn.reset();
        --p.open;
        p.broken_total.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (!conn) {
      if (p.open >= p.options.size) break;
      ++p.open;  // the runner opens it
    }
    start_runner(std::move(conn));
  }
  p.update_gauges();
}

// Sends every waiting one-shot, up to kMaxBatch at a time, each as its own Sync-terminated
// segment (its own implicit transaction: an error aborts only that statement), in one round
// trip. Under load the statements of many requests share one write, one wake-up of the
// backend and one read; alone, a one-shot is sent at once as before.
awaitable<void> Pool::run_one_shots(std::unique_ptr<Connection> conn) {
  Impl& p = *impl_;
  constexpr std::size_t kMaxBatch = 64;
  std::vector<std::shared_ptr<Impl::OneShot>> batch;
  auto finish = [&p, &batch](std::exception_ptr error) {
    for (auto& job : batch) {
      if (error && !job->error) job->error = error;
      job->done = true;
      if (job.use_count() == 1) p.abandoned_total.fetch_add(1, std::memory_order_relaxed);
      job->timer.cancel();
    }
    batch.clear();
  };
  struct Started {  // the first claim, or failing to connect, ends the start
    int& starting;
    bool done = false;
    void operator()() {
      if (!std::exchange(done, true)) --starting;
    }
    ~Started() { (*this)(); }
  } started{p.starting};
  try {
    if (!conn) {
      auto fresh = std::make_unique<Connection>(p.io);
      co_await fresh->connect(p.options);
      p.connects_total.fetch_add(1, std::memory_order_relaxed);
      conn = std::move(fresh);
    }
  } catch (...) {
    started();
    // The waiting one-shots fail like an acquire that cannot connect.
    while (!p.one_shots.empty() && batch.size() < kMaxBatch) {
      batch.push_back(std::move(p.one_shots.front()));
      p.one_shots.pop_front();
    }
    finish(std::current_exception());
    --p.runners;
    release(nullptr);
    co_return;
  }
  while (!p.one_shots.empty() && !conn->in_flight()) {
    while (!p.one_shots.empty() && batch.size() < kMaxBatch) {
      batch.push_back(std::move(p.one_shots.front()));
      p.one_shots.pop_front();
      batch.back()->claimed = true;
    }
    started();
    p.update_gauges();
    try {
      // libpq (15) writes at every Sync; corked, the segments leave as one write and wake the
      // backend once instead of once per call.
      conn->cork(batch.size() > 1);
      for (auto& job : batch) {
        queue_scope(*conn, job->scope);
        conn->queue_statement(*job->query, job->params);
        conn->queue_sync();
      }
      conn->cork(false);
      p.newest_send = std::chrono::steady_clock::now();
      auto outcomes = co_await conn->round_trip_segments(round_trip_deadline(p.options));
      p.batches_total.fetch_add(1, std::memory_order_relaxed);
      p.batched_total.fetch_add(batch.size(), std::memory_order_relaxed);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        if (outcomes[i].error) {
          batch[i]->error = std::make_exception_ptr(std::move(*outcomes[i].error));
        } else {
          batch[i]->result = std::move(outcomes[i].result);
        }
      }
      finish(nullptr);
    } catch (...) {
      finish(std::current_exception());  // the connection failed: it is dropped below
    }
  }
  --p.runners;
  release(std::move(conn));
}

awaitable<Result> Pool::one_shot(Scope scope, const Query& query, Params params) {
  Impl& p = *impl_;
  auto job = std::make_shared<Impl::OneShot>(p.io, std::move(scope), query, std::move(params));
  job->sequence = p.next_sequence++;
  p.one_shots.push_back(job);
  start_runners();
  job->timer.expires_after(p.options.acquire_timeout);
  while (!job->done) {
    auto [ec] = co_await job->timer.async_wait(asio::as_tuple(use_awaitable));
    if (job->done) break;
    if (ec) {  // the caller was cancelled
      if (!job->claimed) std::erase(p.one_shots, job);
      p.update_gauges();
      throw boost::system::system_error(ec);
    }
    if (!job->claimed) {
      std::erase(p.one_shots, job);
      p.wait_timeouts_total.fetch_add(1, std::memory_order_relaxed);
      p.update_gauges();
      throw Error(kPoolExhausted, "no database connection free within the acquire deadline");
    }
    // Sent: its runner's round trip has a deadline of its own and finishes it.
    job->timer.expires_after(round_trip_deadline(p.options) + std::chrono::seconds(1));
  }
  if (job->error) std::rethrow_exception(job->error);
  co_return std::move(job->result);
}

awaitable<Result> Pool::query(const Query& query, Params params) {
  Scope none;  // named: g++ 12 destroys some temporaries in co_await twice
  Result result = co_await one_shot(std::move(none), query, std::move(params));
  co_return result;
}

awaitable<Result> Pool::solo_query(const Query& query, Params params) {
  Lease lease(this, co_await acquire());
  lease.conn->queue_statement(query, params);
  auto results = co_await lease.conn->round_trip(true, round_trip_deadline(impl_->options));
  co_return std::move(results.at(0));
}

awaitable<Result> Pool::tenant_query(std::string tenant_id, const Query& query, Params params) {
  // A named scope, not a temporary: g++ 12 destroys some temporaries in co_await twice.
  Scope scope{.tenant_id = std::move(tenant_id)};
  Result result = co_await scoped_query(std::move(scope), query, std::move(params));
  co_return result;
}

awaitable<Result> Pool::scoped_query(Scope scope, const Query& query, Params params) {
  // No BEGIN and COMMIT: the statements before one Sync are one implicit transaction, which
  // the Sync commits (or, after an error, rolls back), so the scope's transaction-local
  // settings hold for the statement and end with it. Two statements instead of four: the
  // database does a quarter less work per scoped read.
  Result result = co_await one_shot(std::move(scope), query, std::move(params));
  co_return result;
}

awaitable<Transaction> Pool::begin(Scope scope) {
  // Step by step: g++ 12 mishandles a co_await inside a constructor call's arguments.
  std::unique_ptr<Connection> conn = co_await acquire();
  co_return Transaction(this, std::move(conn), std::move(scope));
}

// ----------------------------------------------------------------------------- Transaction

Transaction::Transaction(Pool* pool, std::unique_ptr<Connection> conn, Scope scope)
    : pool_(pool), conn_(std::move(conn)), scope_(std::move(scope)) {}

Transaction::Transaction(Transaction&& other) noexcept
    : pool_(other.pool_),
      conn_(std::move(other.conn_)),
      scope_(std::move(other.scope_)),
      begun_(other.begun_),
      done_(other.done_),
      after_commit_(std::move(other.after_commit_)) {}

Transaction::~Transaction() {
  if (!conn_) return;
  if (begun_ && !done_) conn_->needs_rollback = true;
  pool_->release(std::move(conn_));
}

awaitable<Result> Transaction::exec(const Query& query, Params params) {
  if (done_ || !conn_) throw Error("25000", "transaction already finished");
  if (!begun_) {
    queue_begin(*conn_, scope_);
    begun_ = true;
  }
  conn_->queue_statement(query, params);
  try {
    auto results = co_await conn_->round_trip(false, round_trip_deadline(pool_->impl_->options));
    co_return std::move(results.at(0));
  } catch (const Error&) {
    done_ = true;
    conn_->needs_rollback = true;
    throw;
  }
}

awaitable<Result> Transaction::exec_commit(const Query& query, Params params) {
  if (done_ || !conn_) throw Error("25000", "transaction already finished");
  if (!begun_) {
    queue_begin(*conn_, scope_);
    begun_ = true;
  }
  conn_->queue_statement(query, params);
  conn_->queue_control("COMMIT");
  done_ = true;
  std::vector<Result> results;
  try {
    results = co_await conn_->round_trip(true, round_trip_deadline(pool_->impl_->options));
  } catch (const Error&) {
    conn_->needs_rollback = true;
    throw;
  }
  committed();
  co_return std::move(results.at(0));
}

void Transaction::after_commit(std::function<void()> signal) {
  after_commit_.push_back(std::move(signal));
}

void Transaction::committed() {
  for (auto& signal : std::exchange(after_commit_, {})) {
    try {
      signal();
    } catch (const std::exception& e) {
      log::warn("after-commit signal failed", {{"error", e.what()}});
    }
  }
}

awaitable<void> Transaction::commit() {
  if (done_ || !conn_) co_return;
  done_ = true;
  if (!begun_) co_return;
  conn_->queue_control("COMMIT");
  try {
    co_await conn_->round_trip(true, round_trip_deadline(pool_->impl_->options));
  } catch (const Error&) {
    conn_->needs_rollback = true;
    throw;
  }
  committed();
}

// -------------------------------------------------------------------------------- listen

awaitable<void> listen(PoolOptions options, std::string channel, std::function<void()> on_notify) {
  asio::io_context& io =
      static_cast<asio::io_context&>((co_await asio::this_coro::executor).context());
  asio::steady_timer backoff(io);
  auto delay = std::chrono::milliseconds(100);
  std::string statement = "LISTEN \"" + channel + "\"";
  while (true) {
    try {
      Connection conn(io);
      co_await conn.connect(options);
      conn.queue_control(statement.c_str());
      co_await conn.round_trip(true, options.connect_timeout);
      delay = std::chrono::milliseconds(100);
      on_notify();  // notifications sent while not listening are lost: look once now
      while (true) {
        if (co_await conn.wait_notifications() > 0) on_notify();
      }
    } catch (const Error& e) {
      log::warn("database listener reconnecting",
                {{"channel", channel}, {"error", std::string(e.what())}});
    }
    backoff.expires_after(delay);
    co_await backoff.async_wait(use_awaitable);
    delay = std::min(delay * 2, std::chrono::milliseconds(5000));
  }
}

}  // namespace hsea::db
