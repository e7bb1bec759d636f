#pragma once
// Each step of the request pipeline has one signature: it gets the context and the rest of the
// chain, and returns the response. The order is DESIGN.md's: request id -> access log ->
// security headers -> CORS -> body limits -> tenant -> authentication -> rate limit -> quota
// -> validation -> handler. src/app lists the chain explicitly.
#include <boost/asio/awaitable.hpp>

#include <span>

#include "http/context.hpp"

namespace hsea::http {

class Next;
using Middleware = boost::asio::awaitable<Response> (*)(RequestContext&, Next);

class Next {
 public:
  Next(std::span<const Middleware> rest, Handler handler) : rest_(rest), handler_(handler) {}
  boost::asio::awaitable<Response> operator()(RequestContext& ctx) const;

 private:
  std::span<const Middleware> rest_;
  Handler handler_;
};

// Keeps a safe incoming X-Request-Id, otherwise makes one; reads W3C traceparent; echoes
// X-Request-Id on the response.
boost::asio::awaitable<Response> request_id(RequestContext& ctx, Next next);
// One JSON log line and the request metrics per request.
boost::asio::awaitable<Response> access_log(RequestContext& ctx, Next next);
// HSEA-042: CSP, HSTS (https only), X-Frame-Options, X-Content-Type-Options, Referrer-Policy.
boost::asio::awaitable<Response> security_headers(RequestContext& ctx, Next next);
// Turns exceptions into RFC 9457 problems; unexpected ones are logged in full, answered 500.
boost::asio::awaitable<Response> error_mapping(RequestContext& ctx, Next next);
// Cancels the rest of the chain when HSEA_REQUEST_TIMEOUT_SECONDS passes: 504 problem.
boost::asio::awaitable<Response> deadline(RequestContext& ctx, Next next);
// Answers 404 / 405 (with Allow) when routing found nothing; otherwise passes on.
boost::asio::awaitable<Response> routing(RequestContext& ctx, Next next);

// The innermost handlers: the matched route's handler, or the stored rejection.
boost::asio::awaitable<Response> dispatch(RequestContext& ctx);
boost::asio::awaitable<Response> reject(RequestContext& ctx);

}  // namespace hsea::http
