#pragma once
// The request pipeline. Each step is a Middleware registered by its module at a named Stage;
// the stages run in the order below (DESIGN.md's pipeline), steps within a stage in
// registration order. A step is synchronous (`before` and/or `after`: plain calls, no coroutine
// frame) or asynchronous (`around`: gets the rest of the chain as Next). Exceptions from any
// step or handler become RFC 9457 problems inside the chain (the one error mapping), so every
// answer passes the edge steps' `after` (request id, security headers, access log).
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <exception>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "http/context.hpp"

namespace hsea::http {

enum class Stage {
  kEdge,           // also wraps requests refused before routing: request id, headers, access log
  kRouting,        // deadline, 404/405 (built in)
  kTenant,         // tenant resolution
  kIdentity,       // authentication
  kAdmission,      // authorization; later rate limits, quotas, entitlements
  kAroundHandler,  // body validation, data-access audit
};
std::string_view stage_name(Stage stage);

class Next;
using Before = std::optional<Response> (*)(RequestContext&);  // a response ends the chain
using After = void (*)(RequestContext&, Response&);           // on the way out, every answer
using Around = boost::asio::awaitable<Response> (*)(RequestContext&, Next);
// Whether a step applies to this request (usually: whether the route declares the step's
// policy). A step that does not apply is passed over inline: an asynchronous one then costs no
// coroutine frame.
using When = bool (*)(const RequestContext&);
// Runs after the response was written (usage recording and the like); must not throw.
using AfterResponse = void (*)(const RequestContext&, const Response&);

struct Middleware {
  std::string_view name;
  Stage stage = Stage::kAroundHandler;
  Before before = nullptr;
  After after = nullptr;
  Around around = nullptr;
  When when = nullptr;  // null: always
};

class Next {
 public:
  // A null handler is the matched route's.
  Next(const Middleware* begin, const Middleware* end, Handler handler)
      : begin_(begin), end_(end), handler_(handler) {}
  boost::asio::awaitable<Response> operator()(RequestContext& ctx) const;

 private:
  const Middleware* begin_;
  const Middleware* end_;
  Handler handler_;
};

// The steps in run order. Built once at start; shared read-only by every I/O thread.
class Chain {
 public:
  Chain() = default;
  // Orders the steps by stage (stable); throws std::logic_error for a step with no function or
  // with both `before`/`after` and `around`.
  explicit Chain(std::vector<Middleware> steps, std::vector<AfterResponse> after_response = {});

  // The whole chain, then the matched route's handler.
  boost::asio::awaitable<Response> run(RequestContext& ctx) const;
  // A request refused before routing (ctx.rejection set): the edge stage only.
  boost::asio::awaitable<Response> refuse(RequestContext& ctx) const;
  void after_response(const RequestContext& ctx, const Response& response) const;

  std::span<const Middleware> steps() const { return steps_; }

 private:
  std::vector<Middleware> steps_;
  std::size_t edge_end_ = 0;
  std::vector<AfterResponse> after_response_;
};

// The one error mapping: the exception in flight as a problem response (ApiError -> its
// problem; db::Error -> by SQLSTATE; anything else -> opaque 500), logged with its internal
// detail.
Response problem_for(std::exception_ptr error, const RequestContext& ctx);

// ---- The chain's own steps (registered by the runtime) ------------------------------------
// Keeps a safe incoming X-Request-Id, otherwise makes one; reads W3C traceparent; echoes
// X-Request-Id on the response.
extern const Middleware kRequestId;
// Cancels the rest of the chain when the request timeout passes: 504 problem.
extern const Middleware kDeadline;
// Answers 404 / 405 (with Allow) when routing found nothing.
extern const Middleware kRouting;
void set_request_timeout(std::chrono::milliseconds timeout);

}  // namespace hsea::http
