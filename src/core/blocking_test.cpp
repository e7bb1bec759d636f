#include "core/blocking.hpp"

#include <gtest/gtest.h>

#include <sched.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <chrono>
#include <future>
#include <thread>

namespace hsea::core {
namespace {

using namespace std::chrono_literals;

struct Threads {
  std::thread::id io, work, after;
};

boost::asio::awaitable<Threads> observe(WorkPool& pool) {
  Threads t;
  t.io = std::this_thread::get_id();
  auto work = [] { return std::this_thread::get_id(); };
  t.work = co_await pool.run(std::move(work));
  t.after = std::this_thread::get_id();
  co_return t;
}

boost::asio::awaitable<std::string> failing(WorkPool& pool) {
  auto work = []() -> int { throw std::runtime_error("boom"); };
  try {
    co_await pool.run(std::move(work));
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "no exception";
}

TEST(WorkPool, RunsWorkOffTheIoThreadAndResumesOnIt) {
  boost::asio::io_context io;
  WorkPool pool(WorkPoolOptions{.name = "cpu", .threads = 1});
  auto f = boost::asio::co_spawn(io, observe(pool), boost::asio::use_future);
  std::thread::id io_thread;
  std::thread runner([&] {
    io_thread = std::this_thread::get_id();
    io.run();
  });
  runner.join();
  Threads t = f.get();
  EXPECT_EQ(t.io, io_thread);
  EXPECT_NE(t.work, io_thread) << "the work ran on the I/O thread";
  EXPECT_EQ(t.after, io_thread) << "the coroutine did not come back to its I/O thread";
}

boost::asio::awaitable<int> nice_of_work(WorkPool& pool) {
  auto work = [] { return getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())); };
  co_return co_await pool.run(std::move(work));
}

// Hashing yields to request threads: a pool's work runs at its nice value (the CPU pool's 19),
// and the I/O thread keeps its own.
TEST(WorkPool, APoolRunsItsWorkAtItsNiceValueAndLeavesTheCallerAlone) {
  boost::asio::io_context io;
  int own = getpriority(PRIO_PROCESS, static_cast<id_t>(gettid()));
  WorkPool low(WorkPoolOptions{.name = "cpu", .threads = 1, .nice = 19});
  WorkPool normal(WorkPoolOptions{.name = "io", .threads = 1});
  auto a = boost::asio::co_spawn(io, nice_of_work(low), boost::asio::use_future);
  auto b = boost::asio::co_spawn(io, nice_of_work(normal), boost::asio::use_future);
  io.run();
  EXPECT_EQ(a.get(), std::min(19, own + 19));
  EXPECT_EQ(b.get(), own);
  EXPECT_EQ(getpriority(PRIO_PROCESS, static_cast<id_t>(gettid())), own);
  EXPECT_EQ(sched_getscheduler(0), SCHED_OTHER);
}

TEST(WorkPool, ExceptionsComeBackToTheCaller) {
  boost::asio::io_context io;
  WorkPool pool(WorkPoolOptions{.name = "cpu", .threads = 1});
  auto f = boost::asio::co_spawn(io, failing(pool), boost::asio::use_future);
  io.run();
  EXPECT_EQ(f.get(), "boom");
}

// Blocks a pool thread until released, so the queue can be filled deterministically.
struct Gate {
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
};

boost::asio::awaitable<int> wait_on(WorkPool& pool, std::shared_future<void> gate) {
  auto work = [gate] {
    gate.wait();
    return 1;
  };
  co_return co_await pool.run(std::move(work));
}

boost::asio::awaitable<std::string> refused(WorkPool& pool) {
  auto work = [] { return 2; };
  try {
    co_await pool.run(std::move(work));
  } catch (const ApiError& e) {
    co_return std::string(error_info(e.code()).code) + " retry " +
        std::to_string(e.retry_after_seconds());
  }
  co_return "accepted";
}

TEST(WorkPool, FullQueueRefusesWithServiceUnavailable) {
  boost::asio::io_context io;
  WorkPool pool(WorkPoolOptions{.name = "cpu", .threads = 1, .capacity = 2});
  Gate gate;
  auto a = boost::asio::co_spawn(io, wait_on(pool, gate.opened), boost::asio::use_future);
  auto b = boost::asio::co_spawn(io, wait_on(pool, gate.opened), boost::asio::use_future);
  auto c = boost::asio::co_spawn(io, refused(pool), boost::asio::use_future);
  std::thread runner([&] { io.run(); });
  EXPECT_EQ(c.get(), "service_unavailable retry 1");
  EXPECT_EQ(pool.refused_total(), 1u);
  gate.open.set_value();
  runner.join();
  EXPECT_EQ(a.get() + b.get(), 2);
  EXPECT_EQ(pool.pending(), 0);
}

// The deadline (here a 50 ms timer in a parallel group, as the request deadline does) answers
// on time although the work takes much longer; work queued behind it is skipped.
boost::asio::awaitable<std::string> race(WorkPool& pool, std::shared_future<void> gate,
                                         std::chrono::milliseconds limit) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, limit);
  auto result = co_await (wait_on(pool, gate) ||
                          timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
  co_return result.index() == 0 ? "work" : "deadline";
}

TEST(WorkPool, DeadlineAnswersWhileWorkStillRunsAndQueuedWorkIsSkipped) {
  boost::asio::io_context io;
  WorkPool pool(WorkPoolOptions{.name = "cpu", .threads = 1, .capacity = 8});
  Gate gate;
  auto started = std::chrono::steady_clock::now();
  auto first = boost::asio::co_spawn(io, race(pool, gate.opened, 50ms), boost::asio::use_future);
  auto second = boost::asio::co_spawn(io, race(pool, gate.opened, 50ms), boost::asio::use_future);
  std::thread runner([&] { io.run(); });
  EXPECT_EQ(first.get(), "deadline");
  EXPECT_EQ(second.get(), "deadline");
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1s) << "the deadline waited for the work";
  gate.open.set_value();
  runner.join();
  // The first item was running when its caller gave up; the second had not started: skipped.
  for (int i = 0; i < 100 && pool.pending() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(pool.skipped_total(), 1u);
  EXPECT_EQ(pool.pending(), 0);
}

}  // namespace
}  // namespace hsea::core
