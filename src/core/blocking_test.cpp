#include "core/blocking.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <thread>

namespace hsea::core {
namespace {

struct Threads {
  std::thread::id io, work, after;
};

boost::asio::awaitable<Threads> observe(BlockingPool& pool) {
  Threads t;
  t.io = std::this_thread::get_id();
  auto work = [] { return std::this_thread::get_id(); };
  t.work = co_await pool.run(std::move(work));
  t.after = std::this_thread::get_id();
  co_return t;
}

boost::asio::awaitable<std::string> failing(BlockingPool& pool) {
  auto work = []() -> int { throw std::runtime_error("boom"); };
  try {
    co_await pool.run(std::move(work));
  } catch (const std::runtime_error& e) {
    co_return e.what();
  }
  co_return "no exception";
}

TEST(BlockingPool, RunsWorkOffTheIoThreadAndResumesOnIt) {
  BlockingPool pool(1);
  boost::asio::io_context io;
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

TEST(BlockingPool, ExceptionsComeBackToTheCaller) {
  BlockingPool pool(1);
  boost::asio::io_context io;
  auto f = boost::asio::co_spawn(io, failing(pool), boost::asio::use_future);
  io.run();
  EXPECT_EQ(f.get(), "boom");
}

}  // namespace
}  // namespace hsea::core
