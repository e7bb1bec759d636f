#include "http/middleware.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <algorithm>
#include <atomic>
#include <stdexcept>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "http/problem.hpp"
#include "http/request_io.hpp"

namespace hsea::http {

using boost::asio::awaitable;
using core::ApiError;

std::string_view stage_name(Stage stage) {
  switch (stage) {
    case Stage::kEdge:
      return "edge";
    case Stage::kRouting:
      return "routing";
    case Stage::kTenant:
      return "tenant";
    case Stage::kIdentity:
      return "identity";
    case Stage::kAdmission:
      return "admission";
    case Stage::kAroundHandler:
      return "around-handler";
  }
  return "unknown";
}

std::string_view RequestContext::param(std::string_view name) const {
  for (const PathParam& p : match.params) {
    if (p.name == name) return p.value;
  }
  return {};
}

// ------------------------------------------------------------------------- error mapping

Response problem_for(std::exception_ptr error, const RequestContext& ctx) {
  try {
    std::rethrow_exception(error);
  } catch (const core::ApiError& e) {
    const core::ErrorInfo& info = core::error_info(e.code());
    if (!e.internal_reason().empty() || info.status >= 500) {
      log::write(info.status >= 500 ? log::Level::kWarn : log::Level::kInfo, "request refused",
                 {{"request_id", ctx.request_id},
                  {"code", info.code},
                  {"detail", e.detail()},
                  {"reason", e.internal_reason()}});
    }
    return problem(e, ctx.request_id);
  } catch (const core::DatabaseError& e) {
    core::ErrorCode code = core::error_code_for_sqlstate(e.sqlstate());
    auto level = code == core::ErrorCode::kInternal ? log::Level::kError : log::Level::kWarn;
    log::write(level, "database error",
               {{"request_id", ctx.request_id},
                {"tenant_id", ctx.tenant_id},
                {"query", e.query()},
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
    return problem(code, detail, ctx.request_id);
  } catch (const boost::system::system_error& e) {
    if (e.code() == boost::asio::error::operation_aborted) {
      log::warn("request cancelled", {{"request_id", ctx.request_id}});
      return problem(core::ErrorCode::kServiceUnavailable, "The request was cancelled.",
                     ctx.request_id);
    }
    log::error("unhandled exception", {{"request_id", ctx.request_id}, {"error", e.what()}});
  } catch (const std::exception& e) {
    log::error("unhandled exception", {{"request_id", ctx.request_id}, {"error", e.what()}});
  } catch (...) {
    log::error("unhandled exception", {{"request_id", ctx.request_id}, {"error", "unknown"}});
  }
  return problem(core::ErrorCode::kInternal, "An unexpected error occurred.", ctx.request_id);
}

// ----------------------------------------------------------------------------- the chain

namespace {

// Runs the synchronous steps from `begin` inline until an asynchronous one (which gets the
// rest as Next) or the handler (null: the matched route's); then the `after`s of the steps it
// passed, innermost first. Steps whose `when` says no are passed over. One coroutine frame per
// asynchronous step that applies, none per synchronous one.
awaitable<Response> run_steps(RequestContext& ctx, const Middleware* begin, const Middleware* end,
                              Handler handler) {
  const Middleware* it = begin;
  Response response;
  std::exception_ptr error;
  try {
    bool answered = false;
    for (; it != end; ++it) {
      if (it->when != nullptr && !it->when(ctx)) continue;
      if (it->before != nullptr) {
        if (std::optional<Response> early = it->before(ctx)) {
          response = std::move(*early);
          answered = true;
          ++it;
          break;
        }
      }
      if (it->around != nullptr) {
        const Middleware* step = it++;
        response = co_await step->around(ctx, Next(it, end, handler));
        answered = true;
        break;
      }
    }
    if (!answered) response = co_await (handler != nullptr ? handler : ctx.route()->handler)(ctx);
  } catch (...) {
    error = std::current_exception();
  }
  if (error) response = problem_for(error, ctx);
  for (const Middleware* m = it; m != begin;) {
    --m;
    if (m->after != nullptr && (m->when == nullptr || m->when(ctx))) m->after(ctx, response);
  }
  co_return response;
}

awaitable<Response> reject(RequestContext& ctx) {
  throw *ctx.rejection;
  co_return Response{};
}

}  // namespace

awaitable<Response> Next::operator()(RequestContext& ctx) const {
  return run_steps(ctx, begin_, end_, handler_);
}

Chain::Chain(std::vector<Middleware> steps, std::vector<AfterResponse> after_response)
    : steps_(std::move(steps)), after_response_(std::move(after_response)) {
  for (const Middleware& m : steps_) {
    bool sync = m.before != nullptr || m.after != nullptr;
    if (sync == (m.around != nullptr)) {
      throw std::logic_error("middleware " + std::string(m.name) +
                             " needs before/after or around, not both or neither");
    }
  }
  std::stable_sort(steps_.begin(), steps_.end(),
                   [](const Middleware& a, const Middleware& b) { return a.stage < b.stage; });
  edge_end_ = static_cast<std::size_t>(
      std::ranges::find_if(steps_, [](const Middleware& m) { return m.stage != Stage::kEdge; }) -
      steps_.begin());
}

awaitable<Response> Chain::run(RequestContext& ctx) const {
  return run_steps(ctx, steps_.data(), steps_.data() + steps_.size(), nullptr);
}

awaitable<Response> Chain::refuse(RequestContext& ctx) const {
  return run_steps(ctx, steps_.data(), steps_.data() + edge_end_, reject);
}

void Chain::after_response(const RequestContext& ctx, const Response& response) const {
  for (AfterResponse hook : after_response_) hook(ctx, response);
}

// ------------------------------------------------------------------------ built-in steps

namespace {

std::optional<Response> request_id_before(RequestContext& ctx) {
  std::string_view incoming = ctx.request.header("x-request-id");
  ctx.request_id = core::is_safe_request_id(incoming) ? std::string(incoming) : core::uuid_v7();
  ctx.trace_id = std::string(core::trace_id_from_traceparent(ctx.request.header("traceparent")));
  return std::nullopt;
}

void request_id_after(RequestContext& ctx, Response& response) {
  response.set_header("x-request-id", ctx.request_id);
}

std::atomic<std::int64_t> g_request_timeout_ms{30000};

ApiError timed_out() {
  return ApiError(core::ErrorCode::kTimeout, "The request took too long and was cancelled.");
}

// Runs the rest of the chain and hands back its exception as a value: `||` below waits for
// the first branch to *succeed*, so a throwing handler must not look like a slow one.
awaitable<std::pair<Response, std::exception_ptr>> capture(RequestContext& ctx, Next next) {
  try {
    co_return std::pair{co_await next(ctx), std::exception_ptr()};
  } catch (...) {
    co_return std::pair{Response{}, std::current_exception()};
  }
}

// Without the server's RequestIo (a test or tool runs the chain), the rest runs in a coroutine
// of its own raced against a timer: the parallel group cancels the loser.
awaitable<Response> deadline_in_own_coroutine(RequestContext& ctx, Next next) {
  using namespace boost::asio::experimental::awaitable_operators;
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  timer.expires_at(ctx.started + request_timeout());
  auto result = co_await (capture(ctx, next) ||
                          timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable)));
  if (result.index() == 1) throw timed_out();
  auto& [response, error] = std::get<0>(result);
  if (error) std::rethrow_exception(error);
  co_return std::move(response);
}

// The request's entry in its thread's deadline queue (http/request_io.hpp): when it expires,
// the queue emits the request's cancellation signal, the parent of the request coroutine's
// cancellation slot, so whatever the rest of the chain awaits is cancelled (terminal) and this
// step answers 504. No timer per request, no coroutine of its own.
awaitable<Response> deadline(RequestContext& ctx, Next next) {
  if (ctx.io == nullptr || ctx.io->deadlines == nullptr) {
    co_return co_await deadline_in_own_coroutine(ctx, next);
  }
  DeadlineEntry entry;
  entry.at = ctx.started + request_timeout();
  entry.cancel = &ctx.io->cancel;
  ctx.io->deadlines->add(entry);
  Response response;
  std::exception_ptr error;
  try {
    response = co_await next(ctx);
  } catch (...) {
    error = std::current_exception();
  }
  ctx.io->deadlines->remove(entry);
  if (entry.expired) {
    // The cancellation stays latched in the coroutine's state, and every later co_await would
    // throw operation_aborted: a fresh state lets the 504 be written and the connection serve
    // its next request.
    co_await boost::asio::this_coro::reset_cancellation_state();
    throw timed_out();
  }
  if (error) std::rethrow_exception(error);
  co_return response;
}

std::optional<Response> routing_before(RequestContext& ctx) {
  switch (ctx.match.kind) {
    case Match::Kind::kFound:
      return std::nullopt;
    case Match::Kind::kMethodNotAllowed: {
      Response r = problem(
          core::ErrorCode::kMethodNotAllowed,
          "This resource does not support " + std::string(method_name(ctx.request.method)) + ".",
          ctx.request_id);
      r.set_header("allow", ctx.match.allow);
      return r;
    }
    case Match::Kind::kNotFound:
      break;
  }
  return problem(core::ErrorCode::kNotFound, "No resource at " + ctx.request.path + ".",
                 ctx.request_id);
}

}  // namespace

const Middleware kRequestId{.name = "request-id",
                            .stage = Stage::kEdge,
                            .before = request_id_before,
                            .after = request_id_after};
const Middleware kDeadline{.name = "deadline", .stage = Stage::kRouting, .around = deadline};
const Middleware kRouting{.name = "routing", .stage = Stage::kRouting, .before = routing_before};

void set_request_timeout(std::chrono::milliseconds timeout) {
  g_request_timeout_ms.store(timeout.count());
}

std::chrono::milliseconds request_timeout() {
  return std::chrono::milliseconds(g_request_timeout_ms.load(std::memory_order_relaxed));
}

}  // namespace hsea::http
