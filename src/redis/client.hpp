#pragma once
// Asynchronous Redis client for one I/O thread: one TCP connection on that thread's
// io_context, commands pipelined, replies parsed by hiredis' redisReader and handed out in
// order. A caller that is cancelled (client gone, deadline passed) leaves its slot behind: the
// reader still consumes that reply and drops it, so no reply can reach the wrong caller.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/redis_url.hpp"

namespace boost::asio {
class io_context;
}

namespace hsea::runtime {
class Registrar;
}

namespace hsea::redis {

struct Reply {
  enum class Type { kNil, kString, kStatus, kError, kInteger, kArray };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  long long integer = 0;
  std::vector<Reply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
};

// Redis cannot be reached, or did not answer within the command deadline.
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using Url = core::RedisUrl;
inline Url parse_url(const std::string& url) { return core::parse_redis_url(url); }

class Client {
 public:
  Client(boost::asio::io_context& io, const std::string& url, std::chrono::milliseconds timeout);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts connecting in the background; reconnects by itself with backoff after any failure.
  void start();
  // Closes the connection and fails every waiting command; call on the client's thread.
  void stop();

  // Sends one command (e.g. {"SET", "k", "v"}). A Redis error reply is returned, not thrown.
  // Throws Unavailable when disconnected or past the deadline; boost::system::system_error
  // (operation_aborted) when the calling coroutine is cancelled.
  boost::asio::awaitable<Reply> command(std::vector<std::string> args);

  bool connected() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// The Redis module's settings section.
struct Settings {
  std::string url;  // empty: no Redis (in-process fallbacks)
  int timeout_ms = 1000;
  int tenant_cache_ttl_seconds = 300;  // the tenant cache's default TTL (tenant_cache.hpp)
};

// The Redis module: its settings and, when HSEA_REDIS_URL is set, one Client per I/O thread.
void Register(runtime::Registrar& registrar);
// The calling I/O thread's client, or null when Redis is not configured.
Client* client();

}  // namespace hsea::redis
