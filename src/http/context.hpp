#pragma once
// What every handler and middleware receives for one request: the request, the matched route,
// the tenant, the principal and typed per-request slots. Services are not here: a handler
// reaches them through its module (db::pool(), identity's key store, ...).
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"
#include "http/policy.hpp"
#include "http/router.hpp"

namespace hsea::core {
class ApiError;
}  // namespace hsea::core

namespace hsea::http {

struct RequestIo;  // http/request_io.hpp: the request's cancellation and deadline queue

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
  bool staff = false;  // platform staff (operators): the operator API, never rate limited
  bool authenticated() const { return kind != Kind::kAnonymous; }
};

// Values a middleware leaves for later steps of the same request (the parsed body, ...), one
// per type. Types are owned by the module that fills them.
class Slots {
 public:
  template <typename T, typename... Args>
  T& emplace(Args&&... args) {
    for (Entry& e : entries_) {
      if (e.type == type_key<T>()) {
        e.value = std::make_shared<T>(std::forward<Args>(args)...);
        return *static_cast<T*>(e.value.get());
      }
    }
    entries_.push_back({type_key<T>(), std::make_shared<T>(std::forward<Args>(args)...)});
    return *static_cast<T*>(entries_.back().value.get());
  }
  template <typename T>
  T* find() const {
    for (const Entry& e : entries_) {
      if (e.type == type_key<T>()) return static_cast<T*>(e.value.get());
    }
    return nullptr;
  }

 private:
  struct Entry {
    const void* type;
    std::shared_ptr<void> value;
  };
  std::vector<Entry> entries_;
};

struct RequestContext {
  explicit RequestContext(const Request& req) : request(req) {}

  const Request& request;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::string request_id;
  std::string trace_id;
  Match match;            // route lookup result
  std::string tenant_id;  // set by tenant resolution; empty when none
  Principal principal;    // set by authentication
  Slots slots;
  // Set when the request was refused before routing (malformed, too large): the chain's
  // handler throws it so the answer gets the same headers, log line and metrics.
  const core::ApiError* rejection = nullptr;
  // Set by the server: what the deadline step cancels the request through. Null when something
  // else runs the chain (tests, tools): the deadline step then gives the rest its own coroutine.
  RequestIo* io = nullptr;

  const Route* route() const { return match.route; }
  // The matched route's policy of type P, or null (also when no route matched).
  template <typename P>
  const P* policy() const {
    return match.route != nullptr ? match.route->policy<P>() : nullptr;
  }
  // A path parameter of the matched route ("{user_id}"), or empty.
  std::string_view param(std::string_view name) const;
};

}  // namespace hsea::http
