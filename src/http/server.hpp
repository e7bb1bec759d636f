#pragma once
// The HTTP server: HSEA_THREADS threads, each with its own io_context and SO_REUSEPORT
// acceptor, running Beast coroutine sessions. Beast and Asio stay inside server.cpp.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "http/context.hpp"
#include "http/middleware.hpp"

namespace boost::asio {
class io_context;
}

namespace hsea::http {

struct ServerParts {
  const core::Config& config;
  const Router& router;
  ops::Metrics& metrics;
  std::vector<Middleware> chain;  // the middleware in order; the handler is appended
  // How many leading layers of `chain` also wrap requests refused before routing (malformed,
  // too large): request id, access log, security headers, error mapping.
  std::size_t outer_layers = 4;
  // Runs on each I/O thread before it serves: makes that thread's pools and clients.
  std::function<ThreadServices(int thread_index, boost::asio::io_context& io)> start_thread;
  // Runs on each I/O thread after it stops serving, before its io_context is destroyed.
  std::function<void(int thread_index)> stop_thread;
};

class Server {
 public:
  explicit Server(ServerParts parts);
  ~Server();

  // Binds every acceptor; throws std::runtime_error when the address cannot be used.
  void bind();
  std::uint16_t port() const;

  // Serves until SIGINT or SIGTERM, then stops accepting, lets in-flight requests finish (up
  // to HSEA_SHUTDOWN_GRACE_SECONDS) and returns 0.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsea::http
