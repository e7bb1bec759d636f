#pragma once
// The HTTP server: one SO_REUSEPORT acceptor on each of the runtime's io_contexts, running
// Beast coroutine sessions through the middleware chain. It owns no threads: the runtime does.
// Beast and Asio stay inside server.cpp.
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "http/middleware.hpp"
#include "http/router.hpp"

namespace boost::asio {
class io_context;
}
namespace hsea::core {
struct Config;
}

namespace hsea::http {

struct ServerOptions {
  const core::Config& config;
  const Router& router;
  const Chain& chain;
  std::vector<boost::asio::io_context*> io;  // one acceptor and its sessions per context
};

// How many requests this thread's sessions have started: background work sharing an I/O thread
// with requests (the in-process job worker) reads it to yield while requests are being served.
std::uint64_t requests_started_on_this_thread();

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Binds every acceptor; throws std::runtime_error when the address cannot be used.
  void bind();
  std::uint16_t port() const;
  // Starts accepting on every io_context (which must be running).
  void start();
  // Stops accepting, closes idle connections, lets in-flight requests finish for up to
  // `grace`, then closes what is left; returns once every acceptor is closed. Call before the
  // io_contexts stop; the Server must outlive them (unfinished sessions unregister from it
  // when their frames are destroyed with their io_context).
  void drain(std::chrono::seconds grace);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hsea::http
