#pragma once
// Prometheus metrics. Request counters live in per-thread slots of relaxed atomics, so the
// request path never shares a cache line or a lock with another thread; a scrape sums them.
#include <functional>
#include <memory>
#include <string>

#include "http/message.hpp"

namespace hsea::http {
class Router;
struct Route;
}  // namespace hsea::http

namespace hsea::ops {

class Metrics {
 public:
  Metrics(int threads, const http::Router& router);
  ~Metrics();

  // route is null for requests that matched no route.
  void record_request(int thread, const http::Route* route, http::Method method, int status,
                      double seconds);

  // Extra text appended to every scrape (database pool, Redis...); must be thread-safe.
  void add_source(std::function<void(std::string& out)> source);

  // The exposition text (text/plain; version=0.0.4).
  std::string render() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsea::ops
