#include "http/middleware.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include "core/config.hpp"
#include "core/error.hpp"
#include "db/db.hpp"
#include "ops/metrics.hpp"

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

class Pipeline : public ::testing::Test {
 protected:
  Pipeline() : pool_(io_, db::PoolOptions{.url = "postgresql://nobody@127.0.0.1:1/none"}) {
    router_.add({.method = Method::kGet, .path = "/internal", .handler = throws_internal});
    router_.add({.method = Method::kPost, .path = "/api/things", .handler = throws_validation});
    router_.add({.method = Method::kPost, .path = "/unique", .handler = throws_unique});
    router_.add({.method = Method::kGet, .path = "/fine", .handler = fine});
    metrics_ = std::make_unique<ops::Metrics>(1, router_);
    services_.db = &pool_;
  }

  Response run(Method method, std::string path, std::vector<Header> headers = {}) {
    Request request;
    request.method = method;
    request.path = path;
    request.headers = std::move(headers);
    RequestContext ctx(request, config_, *metrics_, services_);
    ctx.match = router_.match(method, path);
    static const Middleware kChain[] = {request_id,    access_log, security_headers,
                                        error_mapping, deadline,   routing};
    auto future = boost::asio::co_spawn(io_, Next(kChain, dispatch)(ctx), boost::asio::use_future);
    io_.run();
    io_.restart();
    return future.get();
  }

  boost::asio::io_context io_;
  // No secret: the pipeline under test signs nothing.
  core::Config config_ =
      core::load_config([](std::string_view) { return std::nullopt; }, false).value();
  Router router_;
  db::Pool pool_;
  std::unique_ptr<ops::Metrics> metrics_;
  ThreadServices services_;
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
  std::string text = metrics_->render();
  EXPECT_NE(text.find("hsea_http_requests_total{route=\"/fine\",method=\"GET\",status=\"200\"} 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("route=\"unmatched\",method=\"GET\",status=\"404\"} 1"), std::string::npos);
  EXPECT_NE(text.find("hsea_http_request_duration_seconds_count{route=\"/fine\"} 2"),
            std::string::npos);
}

}  // namespace
}  // namespace hsea::http
