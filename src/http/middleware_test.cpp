#include "http/middleware.hpp"

#include <gtest/gtest.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include <future>

#include "core/config.hpp"
#include "core/error.hpp"
#include "db/db.hpp"
#include "http/request_io.hpp"
#include "ops/ops.hpp"
#include "runtime/registrar.hpp"
#include "security/security.hpp"

namespace hsea::http {
namespace {

using boost::asio::awaitable;

awaitable<Response> throws_internal(RequestContext&) {
  throw std::runtime_error("SELECT password FROM users -- internal detail");
  co_return Response{};
}
awaitable<Response> throws_validation(RequestContext&) {
  throw core::ApiError(core::ErrorCode::kValidationFailed, "Check the fields.",
                       {{"/email", "must be an e-mail address"}});
  co_return Response{};
}
awaitable<Response> throws_unique(RequestContext&) {
  throw db::Error("23505", "duplicate key value violates unique constraint \"tenants_slug_key\"",
                  "tenants_slug_key");
  co_return Response{};
}
awaitable<Response> fine(RequestContext&) { co_return Response::json(200, "{}"); }

// Waits `g_slow_wait` on a timer; records whether the wait was cancelled.
std::chrono::milliseconds g_slow_wait{10000};
bool g_slow_cancelled = false;
awaitable<Response> slow(RequestContext&) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  timer.expires_after(g_slow_wait);
  auto [ec] = co_await timer.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  g_slow_cancelled = ec == boost::asio::error::operation_aborted;
  if (ec) throw boost::system::system_error(ec);
  co_return Response::json(200, "{}");
}

// The chain as the server builds it (the chain's own steps plus the ops and security modules'
// edge middleware), run on fake contexts: no network, no database.
class Pipeline : public ::testing::Test {
 protected:
  Pipeline() {
    runtime::Registrar registrar(config_);
    ops::Register(registrar);
    security::Register(registrar);
    registrar.route({.method = Method::kGet, .path = "/internal", .handler = throws_internal});
    registrar.route({.method = Method::kPost, .path = "/api/things", .handler = throws_validation});
    registrar.route({.method = Method::kPost, .path = "/unique", .handler = throws_unique});
    registrar.route({.method = Method::kGet, .path = "/fine", .handler = fine});
    registrar.route({.method = Method::kGet, .path = "/slow", .handler = slow});
    app_.emplace(std::move(registrar).finish());
    app_->started(nullptr);
    chain_ = app_->chain();
    // As the server runs requests: the thread's deadline queue with its watcher, and each
    // request's coroutine bound to the signal the deadline step emits.
    request_io_.deadlines = &deadlines_;
    boost::asio::co_spawn(io_, deadlines_.watch(), [](std::exception_ptr e) {
      if (e) ADD_FAILURE() << "the deadline watcher ended with an exception";
    });
  }
  ~Pipeline() override { set_request_timeout(std::chrono::seconds(30)); }

  template <typename T>
  T drive(std::future<T> future) {
    while (future.wait_for(std::chrono::seconds(0)) != std::future_status::ready) io_.run_one();
    return future.get();
  }

  Response run(Method method, std::string path, std::vector<Header> headers = {}) {
    Request request;
    request.method = method;
    request.path = path;
    request.headers = std::move(headers);
    RequestContext ctx(request);
    ctx.io = &request_io_;
    ctx.match = app_->router.match(method, path);
    return drive(boost::asio::co_spawn(
        io_, chain_.run(ctx),
        boost::asio::bind_cancellation_slot(request_io_.cancel.slot(), boost::asio::use_future)));
  }

  std::string metrics() { return run(Method::kGet, "/metrics").body; }

  // Outlives io_ (the watcher's frame is destroyed with it).
  DeadlineQueue deadlines_;
  RequestIo request_io_;
  boost::asio::io_context io_;
  // No secret: the pipeline under test signs nothing.
  core::Config config_ =
      core::load_config([](std::string_view) { return std::nullopt; }, false).value();
  std::optional<runtime::Application> app_;
  Chain chain_;
};

TEST_F(Pipeline, UnexpectedExceptionBecomesOpaque500WithRequestId) {
  config_.access_log = false;
  Response r = run(Method::kGet, "/internal", {{"x-request-id", "req-123"}});
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
  EXPECT_EQ(r.header("x-request-id"), "req-123");
  EXPECT_EQ(r.body.find("SELECT"), std::string::npos) << r.body;
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body.at("status").as_int64(), 500);
  EXPECT_EQ(body.at("code").as_string(), "internal_error");
  EXPECT_EQ(body.at("request_id").as_string(), "req-123");
  EXPECT_TRUE(body.contains("type") && body.contains("title") && body.contains("detail"));
}

TEST_F(Pipeline, ValidationErrorsListFields) {
  Response r = run(Method::kPost, "/api/v1/things");
  EXPECT_EQ(r.status, 422);
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body.at("code").as_string(), "validation_failed");
  auto errors = body.at("errors").as_array();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].as_object().at("field").as_string(), "/email");
}

TEST_F(Pipeline, SqlStateMapsToStatusWithoutSqlText) {
  Response r = run(Method::kPost, "/unique");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.body.find("tenants_slug_key"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("duplicate key"), std::string::npos) << r.body;
}

TEST_F(Pipeline, NotFoundAndMethodNotAllowedAreProblems) {
  Response missing = run(Method::kGet, "/nothing");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("content-type"), "application/problem+json");
  Response wrong = run(Method::kDelete, "/fine");
  EXPECT_EQ(wrong.status, 405);
  EXPECT_EQ(wrong.header("allow"), "GET, HEAD");
}

TEST_F(Pipeline, UnsafeRequestIdIsReplaced) {
  Response r = run(Method::kGet, "/fine", {{"x-request-id", "bad id\r\nx: y"}});
  EXPECT_NE(r.header("x-request-id"), "bad id\r\nx: y");
  EXPECT_EQ(r.header("x-request-id").size(), 36u);  // a fresh UUID
}

TEST_F(Pipeline, SecurityHeaders) {
  Response r = run(Method::kGet, "/fine");
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  EXPECT_EQ(r.header("x-frame-options"), "DENY");
  EXPECT_EQ(r.header("referrer-policy"), "no-referrer");
  EXPECT_NE(r.header("content-security-policy").find("default-src 'none'"), std::string::npos);
  EXPECT_TRUE(r.header("strict-transport-security").empty());  // http public URL
  config_.public_url = "https://app.example.com";
  Response https = run(Method::kGet, "/fine");
  EXPECT_NE(https.header("strict-transport-security").find("max-age="), std::string::npos);
}

TEST_F(Pipeline, MetricsCountRequestsByRouteAndStatus) {
  run(Method::kGet, "/fine");
  run(Method::kGet, "/fine");
  run(Method::kGet, "/nothing");
  std::string text = metrics();
  EXPECT_NE(text.find("hsea_http_requests_total{route=\"/fine\",method=\"GET\",status=\"200\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("route=\"unmatched\",method=\"GET\",status=\"404\"} 1"), std::string::npos);
  EXPECT_NE(text.find("hsea_http_request_duration_seconds_count{route=\"/fine\"} 2"),
            std::string::npos);
}

TEST_F(Pipeline, DeadlineCancelsTheHandlerAndAnswers504OnTime) {
  config_.access_log = false;
  set_request_timeout(std::chrono::milliseconds(100));
  g_slow_wait = std::chrono::seconds(10);
  g_slow_cancelled = false;
  auto start = std::chrono::steady_clock::now();
  Response r = run(Method::kGet, "/slow", {{"x-request-id", "slow-1"}});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.status, 504);
  EXPECT_EQ(r.problem_code, "timeout");
  EXPECT_EQ(r.header("x-request-id"), "slow-1") << "the 504 passed the edge steps";
  EXPECT_TRUE(g_slow_cancelled) << "the handler's wait was not cancelled";
  EXPECT_GE(took, std::chrono::milliseconds(100));
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_TRUE(deadlines_.empty());
}

// After a deadline the same coroutine (a keep-alive connection) serves its next requests: the
// cancellation does not stay latched, and the next request's deadline still cancels.
awaitable<std::vector<int>> three_requests(const Chain& chain, const Router& router,
                                           RequestIo* io) {
  std::vector<int> statuses;
  for (std::string path : {"/slow", "/fine", "/slow"}) {
    Request request;
    request.path = path;
    RequestContext ctx(request);
    ctx.io = io;
    ctx.match = router.match(Method::kGet, path);
    Response r = co_await chain.run(ctx);
    statuses.push_back(r.status);
    g_slow_wait = std::chrono::milliseconds(20);  // the third finishes in time
  }
  co_return statuses;
}

TEST_F(Pipeline, AfterADeadlineTheSameCoroutineServesItsNextRequests) {
  config_.access_log = false;
  set_request_timeout(std::chrono::milliseconds(100));
  g_slow_wait = std::chrono::seconds(10);
  auto statuses = drive(boost::asio::co_spawn(
      io_, three_requests(chain_, app_->router, &request_io_),
      boost::asio::bind_cancellation_slot(request_io_.cancel.slot(), boost::asio::use_future)));
  EXPECT_EQ(statuses, (std::vector<int>{504, 200, 200}));
  EXPECT_TRUE(deadlines_.empty());
}

TEST_F(Pipeline, FastRequestsLeaveNothingInTheDeadlineQueue) {
  config_.access_log = false;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(Method::kGet, "/fine").status, 200);
  EXPECT_EQ(run(Method::kGet, "/internal").status, 500);
  EXPECT_TRUE(deadlines_.empty());
}

}  // namespace
}  // namespace hsea::http

namespace hsea::http {
namespace {

// The stage order holds whatever order modules register in; synchronous steps wrap like
// asynchronous ones; a short-circuit still passes the outer steps' `after`.
std::vector<std::string> g_trace;

std::optional<Response> admission_before(RequestContext&) {
  g_trace.push_back("admission");
  return std::nullopt;
}
std::optional<Response> tenant_refuses(RequestContext& ctx) {
  g_trace.push_back("tenant");
  if (ctx.request.path == "/refused") return Response::json(403, "{}");
  return std::nullopt;
}
void edge_after(RequestContext&, Response& r) {
  g_trace.push_back("edge-after");
  r.set_header("x-edge", "1");
}
boost::asio::awaitable<Response> identity_around(RequestContext& ctx, Next next) {
  g_trace.push_back("identity-in");
  Response r = co_await next(ctx);
  g_trace.push_back("identity-out");
  co_return r;
}
boost::asio::awaitable<Response> traced(RequestContext&) {
  g_trace.push_back("handler");
  co_return Response::json(200, "{}");
}

Response run_chain(const Chain& chain, const Router& router, std::string path) {
  boost::asio::io_context io;
  Request request;
  request.path = path;
  RequestContext ctx(request);
  ctx.match = router.match(Method::kGet, path);
  auto future = boost::asio::co_spawn(io, chain.run(ctx), boost::asio::use_future);
  io.run();
  return future.get();
}

TEST(Chain, StagesRunInOrderWhateverTheRegistrationOrder) {
  Router router;
  router.add({.method = Method::kGet, .path = "/ok", .handler = traced});
  router.add({.method = Method::kGet, .path = "/refused", .handler = traced});
  Chain chain({{.name = "a", .stage = Stage::kAdmission, .before = admission_before},
               {.name = "i", .stage = Stage::kIdentity, .around = identity_around},
               {.name = "t", .stage = Stage::kTenant, .before = tenant_refuses},
               {.name = "e", .stage = Stage::kEdge, .after = edge_after},
               kRouting});
  g_trace.clear();
  Response ok = run_chain(chain, router, "/ok");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.header("x-edge"), "1");
  EXPECT_EQ(g_trace, (std::vector<std::string>{"tenant", "identity-in", "admission", "handler",
                                               "identity-out", "edge-after"}));
  g_trace.clear();
  Response refused = run_chain(chain, router, "/refused");
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(refused.header("x-edge"), "1") << "a short-circuit skipped the edge's after";
  EXPECT_EQ(g_trace, (std::vector<std::string>{"tenant", "edge-after"}));
}

// Without the server's RequestIo the deadline step still cancels (its own coroutine and timer).
TEST(Chain, DeadlineWithoutTheServersRequestIoStillAnswers504) {
  Router router;
  router.add({.method = Method::kGet, .path = "/slow", .handler = slow});
  Chain chain({kRequestId, kDeadline, kRouting});
  set_request_timeout(std::chrono::milliseconds(50));
  g_slow_wait = std::chrono::seconds(10);
  g_slow_cancelled = false;
  Response r = run_chain(chain, router, "/slow");
  set_request_timeout(std::chrono::seconds(30));
  EXPECT_EQ(r.status, 504);
  EXPECT_TRUE(g_slow_cancelled);
}

// A step whose `when` says no is passed over, `after` included.
bool never(const RequestContext&) { return false; }
boost::asio::awaitable<Response> must_not_run(RequestContext& ctx, Next next) {
  g_trace.push_back("skipped step ran");
  co_return co_await next(ctx);
}
void must_not_run_after(RequestContext&, Response&) { g_trace.push_back("skipped after ran"); }

TEST(Chain, StepsWhoseWhenSaysNoArePassedOver) {
  Router router;
  router.add({.method = Method::kGet, .path = "/ok", .handler = traced});
  Chain chain({{.name = "i", .stage = Stage::kIdentity, .around = must_not_run, .when = never},
               {.name = "e", .stage = Stage::kEdge, .after = must_not_run_after, .when = never},
               {.name = "a", .stage = Stage::kAdmission, .before = admission_before},
               kRouting});
  g_trace.clear();
  EXPECT_EQ(run_chain(chain, router, "/ok").status, 200);
  EXPECT_EQ(g_trace, (std::vector<std::string>{"admission", "handler"}));
}

TEST(Chain, AStepWithBothKindsIsRefusedAtStart) {
  EXPECT_THROW(Chain({{.name = "bad",
                       .stage = Stage::kEdge,
                       .before = admission_before,
                       .around = identity_around}}),
               std::logic_error);
  EXPECT_THROW(Chain({{.name = "empty", .stage = Stage::kEdge}}), std::logic_error);
}

}  // namespace
}  // namespace hsea::http
