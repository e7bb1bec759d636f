#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "http/request_io.hpp"

namespace hsea::http {

using boost::asio::steady_timer;

DeadlineEntry::~DeadlineEntry() {
  if (queue_ != nullptr) queue_->remove(*this);
}

DeadlineQueue::~DeadlineQueue() {
  while (head_ != nullptr) remove(*head_);
}

void DeadlineQueue::add(DeadlineEntry& entry) {
  // From the tail back to the first earlier deadline: with one timeout, that is the tail.
  DeadlineEntry* after = tail_;
  while (after != nullptr && after->at > entry.at) after = after->prev_;
  entry.prev_ = after;
  entry.next_ = after != nullptr ? after->next_ : head_;
  (entry.next_ != nullptr ? entry.next_->prev_ : tail_) = &entry;
  (after != nullptr ? after->next_ : head_) = &entry;
  entry.queue_ = this;
  entry.expired = false;
  // Only when the timeout was shortened since the watcher went to sleep.
  if (entry.at < wake_) rearm(entry.at);
}

void DeadlineQueue::remove(DeadlineEntry& entry) noexcept {
  if (entry.queue_ != this) return;
  (entry.prev_ != nullptr ? entry.prev_->next_ : head_) = entry.next_;
  (entry.next_ != nullptr ? entry.next_->prev_ : tail_) = entry.prev_;
  entry.prev_ = entry.next_ = nullptr;
  entry.queue_ = nullptr;
}

void DeadlineQueue::rearm(TimePoint at) {
  wake_ = at;
  // Moving the expiry aborts the pending wait; the watcher then sleeps until `wake_`.
  if (timer_ != nullptr) static_cast<steady_timer*>(timer_)->expires_at(at);
}

void DeadlineQueue::expire(TimePoint now) {
  // Unlinked before the signal: cancelling may resume the request at once, which may end and
  // add or remove other entries, so the head is read again each time.
  while (head_ != nullptr && head_->at <= now) {
    DeadlineEntry& entry = *head_;
    remove(entry);
    entry.expired = true;
    entry.cancel->emit(boost::asio::cancellation_type::terminal);
  }
}

boost::asio::awaitable<void> DeadlineQueue::watch() {
  steady_timer timer(co_await boost::asio::this_coro::executor);
  timer_ = &timer;
  struct Detach {
    DeadlineQueue* queue;
    ~Detach() {
      queue->timer_ = nullptr;
      queue->wake_ = TimePoint::max();
    }
  } detach{this};
  while (true) {
    TimePoint now = std::chrono::steady_clock::now();
    expire(now);
    wake_ = head_ != nullptr ? head_->at : now + request_timeout();
    timer.expires_at(wake_);
    // as_tuple: a wait aborted by rearm() is no error, only a reason to look again.
    co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }
}

}  // namespace hsea::http
