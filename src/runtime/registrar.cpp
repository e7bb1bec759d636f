#include "runtime/registrar.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/config.hpp"
#include "core/log.hpp"

namespace hsea::runtime {
namespace {

boost::asio::awaitable<void> run_periodically(PeriodicTask task) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(task.first_delay);
  while (true) {
    timer.expires_after(wait);
    co_await timer.async_wait(boost::asio::use_awaitable);
    wait = task.interval;
    try {
      auto started = std::chrono::steady_clock::now();
      co_await task.run();
      if (task.every_thread) continue;  // frequent and per thread: no log line each time
      log::info("periodic task done",
                {{"task", task.name},
                 {"duration_ms", std::chrono::duration<double, std::milli>(
                                     std::chrono::steady_clock::now() - started)
                                     .count()}});
    } catch (const std::exception& e) {
      log::warn("periodic task failed", {{"task", task.name}, {"error", e.what()}});
    }
  }
}

}  // namespace

Application::Application(const core::Config& c, core::EnvLookup env)
    : config(c), settings(std::move(env)) {
  settings.show(core::config_section(), c);
}

Registrar::Registrar(const core::Config& config, core::EnvLookup env)
    : app_(config, std::move(env)) {
  http::set_request_timeout(std::chrono::seconds(config.request_timeout_seconds));
}

http::Chain Application::chain() const {
  // The chain's own steps go first in their stages: request id outermost, the deadline
  // around routing and everything after it.
  std::vector<http::Middleware> steps{http::kRequestId, http::kDeadline, http::kRouting};
  steps.insert(steps.end(), middleware.begin(), middleware.end());
  return http::Chain(std::move(steps), after_response);
}

void Application::started(Runtime* runtime) {
  for (auto& hook : start_hooks) hook(*this, runtime);
}

void Application::start_tasks(Runtime& runtime) const {
  auto io = runtime.io_contexts();
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (tasks[i].once_per_cluster) {
      throw std::logic_error("periodic task " + tasks[i].name +
                             " is once per cluster, but no module schedules such tasks");
    }
    if (tasks[i].every_thread) {
      for (boost::asio::io_context* thread_io : io) {
        spawn(*thread_io, run_periodically(tasks[i]), "periodic " + tasks[i].name);
      }
      continue;
    }
    boost::asio::io_context& thread_io = *io[i % io.size()];
    spawn(thread_io, run_periodically(tasks[i]), "periodic " + tasks[i].name);
  }
}

void Application::render_metrics(std::string& out) const {
  for (const MetricSource& source : metric_sources) source(out);
}

core::WorkPool& cpu_pool() {
  ThreadContext* t = ThreadContext::current();
  if (t == nullptr) throw std::logic_error("the CPU pool was used off an I/O thread");
  return t->runtime().cpu();
}

core::WorkPool& io_pool() {
  ThreadContext* t = ThreadContext::current();
  if (t == nullptr) throw std::logic_error("the I/O pool was used off an I/O thread");
  return t->runtime().io();
}

}  // namespace hsea::runtime
