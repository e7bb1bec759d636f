#include "runtime/runtime.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <future>
#include <thread>

#include "core/log.hpp"

namespace hsea::runtime {
namespace {
thread_local ThreadContext* t_current = nullptr;
}  // namespace

ThreadContext* ThreadContext::current() { return t_current; }

struct Runtime::Impl {
  struct Thread {
    // Declared first, destroyed last: services outlive the io_context, whose destruction
    // may end coroutine frames that still hold them.
    ThreadContext context;
    std::unique_ptr<boost::asio::io_context> io = std::make_unique<boost::asio::io_context>(1);
    std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
    std::thread thread;
  };

  RuntimeOptions options;
  std::vector<ThreadServiceSpec> specs;
  std::vector<std::unique_ptr<Thread>> threads;
  std::unique_ptr<core::WorkPool> cpu;
  std::unique_ptr<core::WorkPool> io;
  bool started = false;
  bool stopped = false;

  void run_thread(Thread& t, std::promise<void>& ready) {
    t_current = &t.context;
    try {
      for (const ThreadServiceSpec& spec : specs) {
        t.context.slots_.push_back({spec.type, spec.make(t.context), &spec});
      }
      ready.set_value();
    } catch (...) {
      ready.set_exception(std::current_exception());
      t_current = nullptr;
      return;
    }
    t.io->run();
    t_current = nullptr;
  }
};

Runtime::Runtime(RuntimeOptions options, std::vector<ThreadServiceSpec> services)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->specs = std::move(services);
  impl_->cpu = std::make_unique<core::WorkPool>(impl_->options.cpu);
  impl_->io = std::make_unique<core::WorkPool>(impl_->options.io);
  for (int i = 0; i < impl_->options.threads; ++i) {
    auto t = std::make_unique<Impl::Thread>();
    t->context.index_ = i;
    t->context.io_ = t->io.get();
    t->context.runtime_ = this;
    t->guard.emplace(t->io->get_executor());
    impl_->threads.push_back(std::move(t));
  }
}

Runtime::~Runtime() { stop(); }

int Runtime::threads() const { return static_cast<int>(impl_->threads.size()); }

void Runtime::start() {
  if (impl_->started) return;
  impl_->started = true;
  std::vector<std::promise<void>> ready(impl_->threads.size());
  for (std::size_t i = 0; i < impl_->threads.size(); ++i) {
    Impl::Thread* t = impl_->threads[i].get();
    t->thread = std::thread([this, t, &ready, i] { impl_->run_thread(*t, ready[i]); });
  }
  std::exception_ptr failure;
  for (auto& r : ready) {
    try {
      r.get_future().get();
    } catch (...) {
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) {
    stop();
    std::rethrow_exception(failure);
  }
}

void Runtime::post(int thread, std::function<void()> f) {
  boost::asio::post(*impl_->threads.at(static_cast<std::size_t>(thread))->io, std::move(f));
}

std::vector<boost::asio::io_context*> Runtime::io_contexts() {
  std::vector<boost::asio::io_context*> out;
  for (auto& t : impl_->threads) out.push_back(t->io.get());
  return out;
}

void Runtime::stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  for (auto& t : impl_->threads) {
    Impl::Thread* raw = t.get();
    boost::asio::post(*raw->io, [raw] {
      auto& slots = raw->context.slots_;
      for (auto it = slots.rbegin(); it != slots.rend(); ++it) {
        if (it->spec->stop) it->spec->stop(it->value.get());
      }
      raw->guard.reset();
      raw->io->stop();
    });
  }
  for (auto& t : impl_->threads) {
    if (t->thread.joinable()) t->thread.join();
  }
  // Work still on the pools posts its completion to a stopped io_context: join them first.
  impl_->cpu.reset();
  impl_->io.reset();
  for (auto& t : impl_->threads) t->io.reset();
  for (auto& t : impl_->threads) {
    auto& slots = t->context.slots_;
    while (!slots.empty()) slots.pop_back();  // newest first
  }
}

core::WorkPool& Runtime::cpu() { return *impl_->cpu; }
core::WorkPool& Runtime::io() { return *impl_->io; }

int wait_for_shutdown_signal() {
  boost::asio::io_context signals_io;
  boost::asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  int received = 0;
  signals.async_wait([&](boost::system::error_code ec, int signal) {
    if (!ec) received = signal;
  });
  signals_io.run();
  return received;
}

void spawn(boost::asio::io_context& io, boost::asio::awaitable<void> work, std::string what) {
  boost::asio::co_spawn(io, std::move(work),
                        [what = std::move(what)](std::exception_ptr e) { log::escaped(e, what); });
}

}  // namespace hsea::runtime
