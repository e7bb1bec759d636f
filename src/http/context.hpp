#pragma once
// What every handler and middleware receives for one request.
#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"
#include "http/router.hpp"

namespace hsea::core {
struct Config;
class ApiError;
}  // namespace hsea::core
namespace hsea::db {
class Pool;
}
namespace hsea::redis {
class Client;
}
namespace hsea::ops {
class Metrics;
}
namespace hsea::app {
struct Shared;
}

namespace hsea::http {

// The services of the I/O thread that runs the request. Nothing here is shared with another
// thread, so nothing on the request path takes a lock.
struct ThreadServices {
  int thread_index = 0;
  db::Pool* db = nullptr;
  redis::Client* redis = nullptr;  // null when HSEA_REDIS_URL is unset
  app::Shared* shared = nullptr;   // process-wide services (keys, blocking pool, throttle)
};

// Who is calling, set by authentication.
struct Principal {
  enum class Kind { kAnonymous, kUser, kApiKey };
  Kind kind = Kind::kAnonymous;
  std::string user_id;              // kUser
  std::string session_id;           // kUser
  std::string api_key_id;           // kApiKey
  std::string role;                 // the caller's role in the request's tenant ("" when none)
  std::vector<std::string> scopes;  // kApiKey
  bool via_cookie = false;
  bool authenticated() const { return kind != Kind::kAnonymous; }
};

struct RequestContext {
  RequestContext(const Request& req, const core::Config& cfg, ops::Metrics& m,
                 const ThreadServices& s)
      : request(req),
        config(cfg),
        metrics(m),
        services(s),
        db(*s.db),
        redis(s.redis),
        shared(s.shared) {}

  const Request& request;
  const core::Config& config;
  ops::Metrics& metrics;
  const ThreadServices& services;
  db::Pool& db;
  redis::Client* redis;
  app::Shared* shared;

  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string request_id;
  std::string trace_id;
  Match match;            // route lookup result
  std::string tenant_id;  // set by tenant resolution; empty when none
  Principal principal;    // set by authentication
  // Set when the request was refused before routing (malformed, too large): the chain's
  // handler throws it so the answer gets the same headers, log line and metrics.
  const core::ApiError* rejection = nullptr;

  const Route* route() const { return match.route; }
  // A path parameter of the matched route ("{user_id}"), or empty.
  std::string_view param(std::string_view name) const;
};

}  // namespace hsea::http
