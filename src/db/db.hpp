#pragma once
// The one way to run SQL. Every statement is a named constant:
//   constexpr db::Query kFindKey{"find_api_key", "SELECT ... WHERE prefix = $1"};
// The name is the prepared statement's name, the metrics label and the log key.
//
// A Pool belongs to one I/O thread. Its connections are libpq in non-blocking pipeline mode on
// that thread's io_context: a tenant-scoped read sends set_config('app.tenant_id') and the
// statement behind one Sync, and concurrent such reads share one round trip (batches).
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"

struct pg_result;
namespace boost::asio {
class io_context;
}
namespace boost::json {
class value;
}

namespace hsea::runtime {
class Registrar;
}
namespace hsea::core {
template <typename S>
struct Section;
}

namespace hsea::db {

struct Query {
  const char* name;
  const char* sql;
};

// Declares a named statement of the product: `HSEA_QUERY kFind{"find_key", "SELECT ..."};`.
// Each one is also placed in the linker section "hsea_queries", so that check_query_names()
// sees every statement of the binary without a hand-kept list.
#define HSEA_QUERY [[gnu::used, gnu::section("hsea_queries")]] constexpr ::hsea::db::Query

// Throws std::logic_error naming both statements when two declared queries share a name (they
// would share one prepared statement). Run at start by every command that talks to PostgreSQL.
void check_query_names();
// The same over any list (for tests).
void check_query_names(std::span<const Query> queries);

// Text-format parameters; nullopt is SQL NULL.
using Params = std::vector<std::optional<std::string>>;

namespace detail {
inline std::optional<std::string> to_param(std::string v) { return v; }
inline std::optional<std::string> to_param(std::string_view v) { return std::string(v); }
inline std::optional<std::string> to_param(const char* v) { return std::string(v); }
inline std::optional<std::string> to_param(bool v) { return v ? "true" : "false"; }
inline std::optional<std::string> to_param(std::nullopt_t) { return std::nullopt; }
template <typename T>
requires std::is_integral_v<T> std::optional<std::string> to_param(T v) {
  return std::to_string(v);
}
template <typename T>
std::optional<std::string> to_param(const std::optional<T>& v) {
  if (!v) return std::nullopt;
  return to_param(*v);
}
}  // namespace detail

template <typename... Args>
Params params(Args&&... args) {
  Params out;
  out.reserve(sizeof...(args));
  (out.push_back(detail::to_param(std::forward<Args>(args))), ...);
  return out;
}

// A statement failed: core::DatabaseError (sqlstate, constraint, the query's name).
using Error = core::DatabaseError;

class Result {
 public:
  Result() = default;
  explicit Result(pg_result* result);
  ~Result();
  Result(Result&&) noexcept;
  Result& operator=(Result&&) noexcept;

  int rows() const;
  int columns() const;
  bool empty() const { return rows() == 0; }
  std::int64_t affected() const;  // rows changed by INSERT/UPDATE/DELETE

  int column(std::string_view name) const;  // throws std::out_of_range
  bool is_null(int row, int col) const;
  std::string_view get(int row, int col) const;  // "" when NULL
  std::string_view get(int row, std::string_view name) const { return get(row, column(name)); }
  std::string text(int row, std::string_view name) const { return std::string(get(row, name)); }
  // A timestamptz column as RFC 3339 ("2026-11-24T08:49:11.903313Z"); connections run in UTC.
  std::string time(int row, std::string_view name) const;
  // A text[] column of simple words ("{read,write}") as its elements.
  std::vector<std::string> words(int row, std::string_view name) const;
  std::optional<std::string> optional(int row, std::string_view name) const;
  std::int64_t get_int(int row, std::string_view name) const;
  bool get_bool(int row, std::string_view name) const;
  // A column of an API answer (result_json.cpp): JSON null when SQL NULL, else its text, its
  // time as RFC 3339, or its integer.
  boost::json::value nullable(int row, std::string_view name) const;
  boost::json::value nullable_time(int row, std::string_view name) const;
  boost::json::value nullable_int(int row, std::string_view name) const;

 private:
  pg_result* result_ = nullptr;
};

struct PoolOptions {
  std::string url;
  int size = 4;
  std::chrono::milliseconds acquire_timeout{2000};
  std::chrono::milliseconds connect_timeout{3000};
  std::chrono::milliseconds statement_timeout{5000};
  // How many of the pool's connections may carry batched one-statement calls at once; the
  // others stay free for transactions. One carries them while its round trips come back
  // quickly; another starts only when every batch out has been waiting for `batch_stall`
  // (a slow statement holding the pipe), so under load the statements of many requests
  // share one write and one wake-up of one backend instead of spreading over several.
  int batch_connections = 2;
  std::chrono::milliseconds batch_stall{2};
};

// Counters readable from any thread (for /metrics).
struct PoolStats {
  int in_use = 0;
  int idle = 0;
  int waiting = 0;
  std::uint64_t waits_total = 0;
  std::uint64_t wait_timeouts_total = 0;
  std::uint64_t connects_total = 0;
  std::uint64_t broken_total = 0;
  std::uint64_t round_trips_total = 0;  // waits for the server: one per pipeline sent
  std::uint64_t batches_total = 0;      // round trips that carried one-statement calls
  std::uint64_t batched_total = 0;      // one-statement calls they carried
  std::uint64_t abandoned_total = 0;    // replies read for callers that had left (cancelled)
};

class Pool;
class Connection;

// Whose rows a transaction may see: app.tenant_id and app.user_id, set with
// set_config(..., true) in the transaction's own pipeline. Empty means unset (no rows of that
// kind are visible).
struct Scope {
  std::string tenant_id;
  std::string user_id;
};
// Build scopes with these, never as braced temporaries inside a co_await: g++ 12 destroys a
// class temporary constructed in a coroutine call's arguments twice.
inline Scope tenant_scope(std::string tenant_id) { return Scope{std::move(tenant_id), {}}; }
inline Scope user_scope(std::string user_id) { return Scope{{}, std::move(user_id)}; }
inline Scope scope(std::string tenant_id, std::string user_id) {
  return Scope{std::move(tenant_id), std::move(user_id)};
}

// A transaction holding one connection. Statements are pipelined: begin() sends nothing; the
// first exec() sends BEGIN, the tenant setting and the statement together. Destroyed without
// commit(), the transaction is rolled back.
class Transaction {
 public:
  Transaction(Transaction&&) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();

  boost::asio::awaitable<Result> exec(const Query& query, Params params = {});
  // Runs the statement and COMMIT in the same round trip; the transaction is done after it.
  boost::asio::awaitable<Result> exec_commit(const Query& query, Params params = {});
  boost::asio::awaitable<void> commit();
  // The tenant and user it runs for (e.g. whose data key seals what it writes).
  const Scope& scope() const { return scope_; }
  // Runs `signal` once COMMIT has succeeded (never after a rollback or a failed commit): for
  // announcements that must not precede what they announce, such as waking job workers.
  void after_commit(std::function<void()> signal);

 private:
  friend class Pool;
  Transaction(Pool* pool, std::unique_ptr<Connection> conn, Scope scope);
  Pool* pool_;
  std::unique_ptr<Connection> conn_;
  Scope scope_;
  bool begun_ = false;
  bool done_ = false;
  std::vector<std::function<void()>> after_commit_;
  void committed();
};

class Pool {
 public:
  Pool(boost::asio::io_context& io, PoolOptions options);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // One statement in its own implicit transaction, no tenant context.
  boost::asio::awaitable<Result> query(const Query& query, Params params = {});
  // The same on a connection of its own, never batched: for statements that may take long
  // (the job queue's claims over a large backlog), which would hold up the one-statement calls
  // batched behind them in the same round trip.
  boost::asio::awaitable<Result> solo_query(const Query& query, Params params = {});
  // One statement after set_config('app.tenant_id', tenant, true), both in one implicit
  // transaction (one Sync, no BEGIN/COMMIT): one round trip, the setting gone after it.
  boost::asio::awaitable<Result> tenant_query(std::string tenant_id, const Query& query,
                                              Params params = {});
  // The same with any scope (tenant and/or user).
  boost::asio::awaitable<Result> scoped_query(Scope scope, const Query& query, Params params = {});
  // A multi-statement transaction; an empty scope sees no tenant- or user-owned row.
  boost::asio::awaitable<Transaction> begin(Scope scope = {});

  PoolStats stats() const;
  const PoolOptions& options() const;
  // Closes idle connections; in-use ones close when released. Call on the pool's thread.
  void close();

 private:
  friend class Transaction;
  struct Lease;  // returns a connection to the pool however the holder ends
  static boost::asio::awaitable<void> roll_back_and_release(Lease lease,
                                                            std::chrono::milliseconds timeout);
  boost::asio::awaitable<std::unique_ptr<Connection>> acquire();
  void release(std::unique_ptr<Connection> conn);
  boost::asio::awaitable<Result> one_shot(Scope scope, const Query& query, Params params);
  void start_runners();
  bool batches_stalled();
  void start_runner(std::unique_ptr<Connection> conn);
  boost::asio::awaitable<void> run_one_shots(std::unique_ptr<Connection> conn);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A connection of its own that LISTENs on `channel` until the caller is cancelled: calls
// on_notify when notifications arrive, and after every (re)connect, since notifications sent
// while it was not listening are lost. Reconnects with backoff after a failure.
boost::asio::awaitable<void> listen(PoolOptions options, std::string channel,
                                    std::function<void()> on_notify);

// The database module's settings section (HSEA_DATABASE_URL, HSEA_DATABASE_ADMIN_URL,
// HSEA_DB_*). A module that needs a URL reads it too: `reg.settings(db::settings_section())`
// (read once, by whichever module asks first).
struct Settings {
  std::string database_url = "postgresql://hsea_app:hsea_app@127.0.0.1:5432/hsea";
  std::string database_admin_url = "postgresql://postgres@127.0.0.1:5432/hsea";  // migrations
  int pool_size = 4;                                                             // per I/O thread
  int batch_connections = 2;
  int acquire_timeout_ms = 2000;
  int connect_timeout_ms = 3000;
  int statement_timeout_ms = 5000;
};

// The database module: its settings, one Pool per I/O thread, pool metrics and the start-up
// check of query names.
void Register(runtime::Registrar& registrar);
const core::Section<Settings>& settings_section();
// The calling I/O thread's pool (throws std::logic_error elsewhere).
Pool& pool();

}  // namespace hsea::db
