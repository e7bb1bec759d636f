#include "http/middleware.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <chrono>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/problem.hpp"
#include "ops/metrics.hpp"

namespace hsea::http {

using boost::asio::awaitable;

awaitable<Response> Next::operator()(RequestContext& ctx) const {
  if (rest_.empty()) co_return co_await handler_(ctx);
  co_return co_await rest_.front()(ctx, Next(rest_.subspan(1), handler_));
}

std::string_view RequestContext::param(std::string_view name) const {
  for (const PathParam& p : match.params) {
    if (p.name == name) return p.value;
  }
  return {};
}

awaitable<Response> request_id(RequestContext& ctx, Next next) {
  std::string_view incoming = ctx.request.header("x-request-id");
  ctx.request_id = core::is_safe_request_id(incoming) ? std::string(incoming) : core::uuid_v7();
  ctx.trace_id = std::string(core::trace_id_from_traceparent(ctx.request.header("traceparent")));
  Response response = co_await next(ctx);
  response.set_header("x-request-id", ctx.request_id);
  co_return response;
}

awaitable<Response> access_log(RequestContext& ctx, Next next) {
  Response response = co_await next(ctx);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count();
  ctx.metrics.record_request(ctx.services.thread_index, ctx.route(), ctx.request.method,
                             response.status, seconds);
  if (ctx.config.access_log) {
    const Route* route = ctx.route();
    log::info("request", {{"request_id", ctx.request_id},
                          {"trace_id", ctx.trace_id},
                          {"tenant_id", ctx.tenant_id},
                          {"method", method_name(ctx.request.method)},
                          {"path", ctx.request.path},
                          {"route", route ? std::string_view(route->path) : "unmatched"},
                          {"status", response.status},
                          {"duration_ms", seconds * 1000.0},
                          {"bytes", response.body.size()},
                          {"remote_ip", ctx.request.remote_ip}});
  }
  co_return response;
}

awaitable<Response> security_headers(RequestContext& ctx, Next next) {
  Response response = co_await next(ctx);
  // An API answers JSON; nothing it returns should load scripts or be framed. The web UI's
  // static files get their own policy where they are served.
  if (response.header("content-security-policy").empty()) {
    response.set_header("content-security-policy",
                        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'");
  }
  response.set_header("x-frame-options", "DENY");
  response.set_header("x-content-type-options", "nosniff");
  response.set_header("referrer-policy", "no-referrer");
  if (ctx.config.public_url_is_https()) {
    response.set_header("strict-transport-security", "max-age=63072000; includeSubDomains");
  }
  co_return response;
}

awaitable<Response> error_mapping(RequestContext& ctx, Next next) {
  // Exceptions are turned into responses outside the catch blocks: co_await is not allowed
  // inside a handler block.
  try {
    co_return co_await next(ctx);
  } catch (const core::ApiError& e) {
    co_return problem(e, ctx.request_id);
  } catch (const db::Error& e) {
    core::ErrorCode code = core::error_code_for_sqlstate(e.sqlstate());
    auto level = code == core::ErrorCode::kInternal ? log::Level::kError : log::Level::kWarn;
    log::write(level, "database error",
               {{"request_id", ctx.request_id},
                {"tenant_id", ctx.tenant_id},
                {"sqlstate", e.sqlstate()},
                {"constraint", e.constraint()},
                {"error", e.what()}});
    std::string_view detail;
    switch (code) {
      case core::ErrorCode::kConflict:
        detail = "The request conflicts with existing data.";
        break;
      case core::ErrorCode::kValidationFailed:
        detail = "A value is not acceptable.";
        break;
      case core::ErrorCode::kServiceUnavailable:
        detail = "The database is unavailable; try again shortly.";
        break;
      case core::ErrorCode::kTimeout:
        detail = "The database did not answer in time.";
        break;
      case core::ErrorCode::kForbidden:
        detail = "You may not change this data.";
        break;
      default:
        detail = "An unexpected error occurred.";
    }
    co_return problem(code, detail, ctx.request_id);
  } catch (const boost::system::system_error& e) {
    if (e.code() == boost::asio::error::operation_aborted) {
      log::warn("request cancelled", {{"request_id", ctx.request_id}});
      co_return problem(core::ErrorCode::kServiceUnavailable, "The request was cancelled.",
                        ctx.request_id);
    }
    log::error("unhandled exception", {{"request_id", ctx.request_id}, {"error", e.what()}});
  } catch (const std::exception& e) {
    log::error("unhandled exception", {{"request_id", ctx.request_id}, {"error", e.what()}});
  }
  co_return problem(core::ErrorCode::kInternal, "An unexpected error occurred.", ctx.request_id);
}

namespace {
// Runs the rest of the chain and hands back its exception as a value: `||` below waits for
// the first branch to *succeed*, so a throwing handler must not look like a slow one.
awaitable<std::pair<Response, std::exception_ptr>> capture(RequestContext& ctx, Next next) {
  try {
    co_return std::pair{co_await next(ctx), std::exception_ptr()};
  } catch (...) {
    co_return std::pair{Response{}, std::current_exception()};
  }
}
}  // namespace

awaitable<Response> deadline(RequestContext& ctx, Next next) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  timer.expires_after(std::chrono::seconds(ctx.config.request_timeout_seconds));
  // as_tuple: the timer loses almost every race, and a thrown operation_aborted per request
  // would cost more than the rest of the chain.
  auto result = co_await (capture(ctx, next) ||
                          timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
  if (result.index() == 1) {
    throw core::ApiError(core::ErrorCode::kTimeout, "The request took too long and was cancelled.");
  }
  auto& [response, error] = std::get<0>(result);
  if (error) std::rethrow_exception(error);
  co_return std::move(response);
}

awaitable<Response> dispatch(RequestContext& ctx) { co_return co_await ctx.route()->handler(ctx); }

awaitable<Response> reject(RequestContext& ctx) {
  throw *ctx.rejection;
  co_return Response{};
}

awaitable<Response> routing(RequestContext& ctx, Next next) {
  switch (ctx.match.kind) {
    case Match::Kind::kFound:
      co_return co_await next(ctx);
    case Match::Kind::kMethodNotAllowed: {
      Response r = problem(
          core::ErrorCode::kMethodNotAllowed,
          "This resource does not support " + std::string(method_name(ctx.request.method)) + ".",
          ctx.request_id);
      r.set_header("allow", ctx.match.allow);
      co_return r;
    }
    case Match::Kind::kNotFound:
      break;
  }
  co_return problem(core::ErrorCode::kNotFound, "No resource at " + ctx.request.path + ".",
                    ctx.request_id);
}

}  // namespace hsea::http
