#pragma once
// Bounded pools for work that must not run on an I/O thread: the runtime keeps one for CPU
// work (Argon2id, PDF) and one for blocking I/O (libcurl, DNS). A coroutine awaits the work
// and resumes on its own executor.
//
// - Bounded: when `capacity` items are queued or running, run() refuses at once with a 503
//   problem (core::ApiError kServiceUnavailable, Retry-After 1) instead of queueing without end.
// - Cancellable: the await honours Asio's per-operation cancellation (the request deadline
//   cancels it), so the caller gets its answer on time even while the work still runs; work
//   whose caller is gone by the time a pool thread picks it up is skipped, and its result is
//   dropped otherwise.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "core/error.hpp"

namespace hsea::core {

struct WorkPoolOptions {
  std::string name;  // "cpu" or "io": metrics label and the 503's detail
  int threads = 1;
  int capacity = 64;  // queued + running items before run() refuses
  // Added to the pool threads' nice value: CPU work yields to I/O threads. Not SCHED_IDLE,
  // whose weight (3 against a normal thread's 1024) starved the hashing of sign-ups whenever the
  // cores were busy (10 s and more per sign-up under a build); nice 19 (weight 15) still leaves
  // request threads the cores while bounding the wait.
  int nice = 0;
};

class WorkPool {
 public:
  explicit WorkPool(WorkPoolOptions options)
      : options_(std::move(options)), pool_(static_cast<std::size_t>(options_.threads)) {}
  ~WorkPool() { pool_.join(); }
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  const WorkPoolOptions& options() const { return options_; }
  int pending() const { return pending_.load(std::memory_order_relaxed); }
  std::uint64_t refused_total() const { return refused_.load(std::memory_order_relaxed); }
  std::uint64_t skipped_total() const { return skipped_.load(std::memory_order_relaxed); }

  // Runs f() on the pool and returns its result (or rethrows its exception) on the caller's
  // executor. Throws ApiError(kServiceUnavailable) when the pool is full, and
  // boost::system::system_error(operation_aborted) when the caller's operation is cancelled.
  template <typename F>
  boost::asio::awaitable<std::invoke_result_t<F>> run(F f) {
    using R = std::invoke_result_t<F>;
    using Stored = std::conditional_t<std::is_void_v<R>, bool, R>;
    if (pending_.fetch_add(1, std::memory_order_relaxed) >= options_.capacity) {
      pending_.fetch_sub(1, std::memory_order_relaxed);
      refused_.fetch_add(1, std::memory_order_relaxed);
      throw ApiError(ErrorCode::kServiceUnavailable,
                     "The server is busy (" + options_.name + " work queue full); try again.")
          .retry_after(1);
    }
    auto home = co_await boost::asio::this_coro::executor;
    // The state outlives whichever side finishes last: the waiter (cancelled by the deadline)
    // or the pool thread (still hashing).
    struct State {
      explicit State(boost::asio::any_io_executor ex) : done_signal(ex) {}
      boost::asio::steady_timer done_signal;  // cancelled on the home executor when done
      std::atomic<bool> abandoned{false};
      bool done = false;  // home executor only
      std::optional<Stored> result;
      std::exception_ptr error;
    };
    auto state = std::make_shared<State>(home);
    state->done_signal.expires_at(boost::asio::steady_timer::time_point::max());
    boost::asio::post(pool_, [this, state, home, f = std::move(f)]() mutable {
      lower_priority_once(options_.nice);
      if (state->abandoned.load(std::memory_order_acquire)) {
        skipped_.fetch_add(1, std::memory_order_relaxed);
      } else {
        try {
          if constexpr (std::is_void_v<R>) {
            f();
            state->result.emplace(true);
          } else {
            state->result.emplace(f());
          }
        } catch (...) {
          state->error = std::current_exception();
        }
      }
      pending_.fetch_sub(1, std::memory_order_relaxed);
      boost::asio::post(home, [state] {
        state->done = true;
        state->done_signal.cancel();
      });
    });
    co_await state->done_signal.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    if (!state->done) {
      // Cancelled (deadline passed): the pool drops the result, or skips the work entirely.
      state->abandoned.store(true, std::memory_order_release);
      throw boost::system::system_error(boost::asio::error::operation_aborted);
    }
    if (state->error) std::rethrow_exception(state->error);
    if constexpr (!std::is_void_v<R>) co_return std::move(*state->result);
  }

 private:
  static void lower_priority_once(int nice) {
    thread_local bool lowered = [nice] {
      if (nice != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), nice);
      return true;
    }();
    (void)lowered;
  }

  WorkPoolOptions options_;
  boost::asio::thread_pool pool_;
  std::atomic<int> pending_{0};
  std::atomic<std::uint64_t> refused_{0};
  std::atomic<std::uint64_t> skipped_{0};
};

}  // namespace hsea::core
