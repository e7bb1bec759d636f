#pragma once
// What the server gives each request's coroutine so that the deadline step can cancel it
// without a coroutine of its own: the cancellation signal whose slot is that coroutine's parent
// (the session is co_spawned bound to it), and its thread's deadline queue. Internal to the
// http module (and its tests and benchmarks): Asio types, so no widely included header
// includes it; RequestContext only names the type.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>

#include <chrono>

namespace hsea::http {

class DeadlineQueue;

// One request's place in its thread's queue; lives in the deadline step's frame.
struct DeadlineEntry {
  DeadlineEntry() = default;
  DeadlineEntry(const DeadlineEntry&) = delete;
  DeadlineEntry& operator=(const DeadlineEntry&) = delete;
  ~DeadlineEntry();  // leaves the queue (a frame destroyed unfinished, at shutdown)

  std::chrono::steady_clock::time_point at;
  boost::asio::cancellation_signal* cancel = nullptr;  // emitted (terminal) when `at` passes
  bool expired = false;

 private:
  friend class DeadlineQueue;
  DeadlineQueue* queue_ = nullptr;  // set while queued
  DeadlineEntry* prev_ = nullptr;
  DeadlineEntry* next_ = nullptr;
};

// The requests in flight on one thread, in deadline order, and the one timer that serves them
// all. Every request has the same timeout, so arrival order is deadline order: adding is a link
// at the tail and removing an unlink, with no timer operation. The watcher sleeps until the
// earliest deadline (or one timeout when the queue is empty), expires what is due and sleeps
// again, so under load it wakes about once per timeout, not once per request.
class DeadlineQueue {
 public:
  DeadlineQueue() = default;
  DeadlineQueue(const DeadlineQueue&) = delete;
  DeadlineQueue& operator=(const DeadlineQueue&) = delete;
  ~DeadlineQueue();

  void add(DeadlineEntry& entry);
  void remove(DeadlineEntry& entry) noexcept;
  bool empty() const { return head_ == nullptr; }

  // The watcher: spawn it once on the queue's io_context; it runs until the context stops (its
  // frame is destroyed with the context). The queue must outlive the context.
  boost::asio::awaitable<void> watch();

 private:
  using TimePoint = std::chrono::steady_clock::time_point;
  void expire(TimePoint now);
  void rearm(TimePoint at);

  DeadlineEntry* head_ = nullptr;
  DeadlineEntry* tail_ = nullptr;
  void* timer_ = nullptr;  // the watcher's steady_timer while it runs
  TimePoint wake_ = TimePoint::max();
};

struct RequestIo {
  // The request coroutine's parent cancellation slot is this signal's: emitting it cancels
  // whatever the request awaits (terminal cancellation).
  boost::asio::cancellation_signal cancel;
  DeadlineQueue* deadlines = nullptr;
};

// The request timeout every deadline step uses (set_request_timeout).
std::chrono::milliseconds request_timeout();

}  // namespace hsea::http
