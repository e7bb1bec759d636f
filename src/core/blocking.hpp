#pragma once
// The one bounded pool for CPU-heavy or blocking work (Argon2id, key generation, libcurl):
// a coroutine awaits it and resumes on its own I/O thread, so no I/O thread ever blocks.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/resource.h>
#include <unistd.h>

#include <exception>
#include <optional>
#include <type_traits>

namespace hsea::core {

class BlockingPool {
 public:
  explicit BlockingPool(int threads) : pool_(threads) {}
  ~BlockingPool() { pool_.join(); }

  // Runs f() on the pool and returns its result (or rethrows its exception) on the caller's
  // executor.
  template <typename F>
  boost::asio::awaitable<std::invoke_result_t<F>> run(F f) {
    using R = std::invoke_result_t<F>;
    auto home = co_await boost::asio::this_coro::executor;
    // The completion token carries the executor to resume on: bind it, or post() would only
    // bounce through the pool and resume right back on the I/O thread.
    co_await boost::asio::post(
        boost::asio::bind_executor(pool_.get_executor(), boost::asio::use_awaitable));
    lower_priority_once();
    std::exception_ptr error;
    if constexpr (std::is_void_v<R>) {
      try {
        f();
      } catch (...) {
        error = std::current_exception();
      }
      co_await boost::asio::post(boost::asio::bind_executor(home, boost::asio::use_awaitable));
      if (error) std::rethrow_exception(error);
    } else {
      std::optional<R> result;
      try {
        result.emplace(f());
      } catch (...) {
        error = std::current_exception();
      }
      co_await boost::asio::post(boost::asio::bind_executor(home, boost::asio::use_awaitable));
      if (error) std::rethrow_exception(error);
      co_return std::move(*result);
    }
  }

 private:
  // Blocking threads run at a lower priority than the I/O threads, so that saturating them
  // with password hashing does not starve request handling on a small machine.
  static void lower_priority_once() {
    thread_local bool lowered = [] {
      setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
      return true;
    }();
    (void)lowered;
  }
  boost::asio::thread_pool pool_;
};

}  // namespace hsea::core
