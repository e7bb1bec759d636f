#pragma once
// The runtime: N I/O threads, each with its own io_context and its own instances of the
// per-thread services that modules declare (the PostgreSQL pool, the Redis client, ...), plus
// the process-wide CPU and I/O work pools. `hsea serve` runs the HTTP server on it; `hsea
// worker` runs the same runtime without HTTP. Asio stays out of this header.
#include <boost/asio/awaitable.hpp>

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "core/blocking.hpp"
#include "http/policy.hpp"

namespace boost::asio {
class io_context;
}

namespace hsea::runtime {

// How a module makes one per-thread service: on the I/O thread, before it serves; `stop` runs
// on the thread after it stops serving, while its io_context still exists (close sockets);
// the service itself is destroyed after the io_context, so work still holding it can end.
struct ThreadServiceSpec {
  std::string name;
  const void* type = nullptr;
  std::function<std::shared_ptr<void>(class ThreadContext&)> make;
  std::function<void(void*)> stop;
};

class ThreadContext {
 public:
  int index() const { return index_; }
  boost::asio::io_context& io() const { return *io_; }
  class Runtime& runtime() const {
    return *runtime_;
  }

  // The thread's service of type T; throws std::logic_error when no module provides one.
  template <typename T>
  T& get() const {
    if (T* found = find<T>()) return *found;
    throw std::logic_error("no per-thread service of the requested type is registered");
  }
  // The same, or null when no module provides one (optional services: Redis).
  template <typename T>
  T* find() const {
    const void* key = http::type_key<T>();
    for (const Slot& s : slots_) {
      if (s.type == key) return static_cast<T*>(s.value.get());
    }
    return nullptr;
  }

  // The calling I/O thread's context; null on any other thread.
  static ThreadContext* current();

 private:
  friend class Runtime;
  struct Slot {
    const void* type;
    std::shared_ptr<void> value;
    const ThreadServiceSpec* spec;
  };
  int index_ = 0;
  boost::asio::io_context* io_ = nullptr;
  class Runtime* runtime_ = nullptr;
  std::vector<Slot> slots_;
};

// The calling I/O thread's service of type T (a module's accessor, e.g. db::pool(), uses it).
template <typename T>
T& local() {
  ThreadContext* t = ThreadContext::current();
  if (t == nullptr) throw std::logic_error("a per-thread service was used off an I/O thread");
  return t->get<T>();
}

struct RuntimeOptions {
  int threads = 1;
  core::WorkPoolOptions cpu{.name = "cpu"};
  core::WorkPoolOptions io{.name = "io"};
};

class Runtime {
 public:
  Runtime(RuntimeOptions options, std::vector<ThreadServiceSpec> services);
  ~Runtime();  // stop()s if still running
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  int threads() const;
  // Starts the threads; returns once every thread has made its services. Throws what a
  // service factory threw.
  void start();
  // Runs f on thread i's io_context (any thread may call it).
  void post(int thread, std::function<void()> f);
  // Every thread's io_context, by index (for the HTTP server's acceptors).
  std::vector<boost::asio::io_context*> io_contexts();
  // Stops the threads: runs each service's stop on its thread, stops and joins the threads,
  // joins the work pools, then destroys the io_contexts (and with them unfinished coroutine
  // frames) and the services, in that order. Idempotent.
  void stop();

  core::WorkPool& cpu();
  core::WorkPool& io();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Blocks until SIGINT or SIGTERM arrives; returns the signal's number.
int wait_for_shutdown_signal();

// Starts a detached coroutine whose escape is logged (never silently swallowed): `what` names
// it in the log line.
void spawn(boost::asio::io_context& io, boost::asio::awaitable<void> work, std::string what);

}  // namespace hsea::runtime
