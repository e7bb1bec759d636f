// The CORS step, in the style of http/middleware_test.cpp: the chain as the server builds it
// (the chain's own steps plus the ops and security modules' middleware) on fake requests, with
// this thread's origins cache primed as a database look-up would fill it. The database path,
// the settings API and the audit entries are proved through the real server in
// tests/cors_csrf_httptest.cpp.
#include "security/cors.hpp"

#include <gtest/gtest.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/json/parse.hpp>

#include "core/config.hpp"
#include "ops/ops.hpp"
#include "runtime/registrar.hpp"
#include "security/security.hpp"

namespace hsea::security {
namespace {

using boost::asio::awaitable;
using http::Method;
using http::Response;

awaitable<Response> fine(http::RequestContext&) { co_return Response::json(200, "{}"); }

// "acme.example.test" names the tenant acme, any other host none.
std::string test_host_slug(std::string_view host) {
  return host.starts_with("acme.example.test") ? "acme" : "";
}

constexpr const char* kTenant = "0190f5c4-0000-7000-8000-000000000001";

class Cors : public ::testing::Test {
 protected:
  Cors() {
    config_.access_log = false;
    runtime::Registrar registrar(config_);
    ops::Register(registrar);
    security::Register(registrar);
    registrar.route({.method = Method::kGet, .path = "/api/things", .handler = fine});
    registrar.route({.method = Method::kPatch, .path = "/api/things", .handler = fine});
    app_.emplace(std::move(registrar).finish());
    app_->started(nullptr);
    chain_ = app_->chain();
    set_cors_host_slug(test_host_slug);
    remember_cors_origins("acme", kTenant, {"https://app.acme.com", "http://localhost:5173"});
  }
  ~Cors() override { invalidate_cors_cache(); }

  Response run(Method method, std::string path, std::vector<http::Header> headers) {
    http::Request request;
    request.method = method;
    request.path = path;
    request.headers = std::move(headers);
    http::RequestContext ctx(request);
    ctx.match = app_->router.match(method, path);
    auto future = boost::asio::co_spawn(io_, chain_.run(ctx), boost::asio::use_future);
    io_.restart();
    io_.run();
    return future.get();
  }

  Response preflight(std::string host, std::string origin, std::string path = "/api/things") {
    return run(Method::kOptions, path,
               {{"host", host},
                {"origin", origin},
                {"access-control-request-method", "PATCH"},
                {"access-control-request-headers", "content-type, x-csrf-token"}});
  }

  boost::asio::io_context io_;
  core::Config config_ =
      core::load_config([](std::string_view) { return std::nullopt; }, false).value();
  std::optional<runtime::Application> app_;
  http::Chain chain_;
};

bool has_cors_header(const Response& r) {
  for (const auto& h : r.headers) {
    if (h.name.starts_with("access-control-")) return true;
  }
  return false;
}

TEST_F(Cors, PreflightFromAListedOriginIs204WithTheRoutesMethods) {
  Response r = preflight("acme.example.test", "https://app.acme.com");
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.header("access-control-allow-origin"), "https://app.acme.com");
  EXPECT_EQ(r.header("access-control-allow-methods"), "GET, HEAD, PATCH");
  EXPECT_EQ(r.header("access-control-allow-credentials"), "true");
  std::string_view allowed = r.header("access-control-allow-headers");
  for (std::string_view h : {"Authorization", "Content-Type", "X-CSRF-Token", "Idempotency-Key",
                             "X-API-Key", "X-Tenant-Id"}) {
    EXPECT_NE(allowed.find(h), std::string_view::npos) << h;
  }
  EXPECT_EQ(r.header("access-control-max-age"), "600");
  EXPECT_EQ(r.header("vary"), "Origin");
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff") << "the edge's headers still apply";
  EXPECT_FALSE(r.header("x-request-id").empty());
}

TEST_F(Cors, PreflightFromAnyOtherOriginIsA403ProblemWithoutCorsHeaders) {
  for (auto [host, origin] : {std::pair{"acme.example.test", "https://evil.example.com"},
                              std::pair{"acme.example.test", "https://app.acme.com.evil.com"},
                              std::pair{"acme.example.test", "null"},
                              std::pair{"other.example.test", "https://app.acme.com"}}) {
    Response r = preflight(host, origin);
    EXPECT_EQ(r.status, 403) << host << " " << origin;
    EXPECT_EQ(r.problem_code, "origin_not_allowed");
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(boost::json::parse(r.body).as_object().at("code").as_string(), "origin_not_allowed");
    EXPECT_FALSE(has_cors_header(r)) << host << " " << origin;
  }
}

TEST_F(Cors, ActualRequestsGetCredentialsOnlyForListedOrigins) {
  Response listed = run(Method::kGet, "/api/things",
                        {{"host", "acme.example.test"}, {"origin", "http://localhost:5173"}});
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(listed.header("access-control-allow-origin"), "http://localhost:5173");
  EXPECT_EQ(listed.header("access-control-allow-credentials"), "true");
  EXPECT_NE(listed.header("access-control-expose-headers").find("X-Request-Id"),
            std::string_view::npos);
  EXPECT_NE(listed.header("access-control-expose-headers").find("Retry-After"),
            std::string_view::npos);
  EXPECT_EQ(listed.header("vary"), "Origin");

  Response other = run(Method::kGet, "/api/things",
                       {{"host", "acme.example.test"}, {"origin", "https://evil.example.com"}});
  EXPECT_EQ(other.status, 200) << "the request itself runs; the browser hides the answer";
  EXPECT_FALSE(has_cors_header(other));
}

TEST_F(Cors, RequestsWithoutOriginOrFromTheHostItselfAreUntouched) {
  Response plain = run(Method::kGet, "/api/things", {{"host", "acme.example.test"}});
  EXPECT_FALSE(has_cors_header(plain));
  EXPECT_TRUE(plain.header("vary").empty());
  Response same =
      run(Method::kPatch, "/api/things",
          {{"host", "acme.example.test:8443"}, {"origin", "https://ACME.example.test:8443"}});
  EXPECT_EQ(same.status, 200);
  EXPECT_FALSE(has_cors_header(same));
  // A plain OPTIONS (no Access-Control-Request-Method) is no preflight: 405 as before.
  Response options = run(Method::kOptions, "/api/things", {{"host", "acme.example.test"}});
  EXPECT_EQ(options.status, 405);
}

TEST_F(Cors, TheCacheIsEmptiedWhenOriginsChange) {
  EXPECT_EQ(preflight("acme.example.test", "https://app.acme.com").status, 204);
  invalidate_cors_cache();
  remember_cors_origins("acme", kTenant, {"https://new.acme.com"});
  EXPECT_EQ(preflight("acme.example.test", "https://new.acme.com").status, 204);
  EXPECT_EQ(preflight("acme.example.test", "https://app.acme.com").status, 403);
}

TEST(CorsConfig, OriginsAreNormalisedOrRefusedWithAReason) {
  auto normal = [](std::string_view in) {
    std::string out, reason;
    EXPECT_TRUE(normalize_origin(in, out, reason)) << in << ": " << reason;
    return out;
  };
  EXPECT_EQ(normal("HTTPS://App.Example.COM"), "https://app.example.com");
  EXPECT_EQ(normal("https://app.example.com:443"), "https://app.example.com");
  EXPECT_EQ(normal("http://app.example.com:80"), "http://app.example.com");
  EXPECT_EQ(normal("http://localhost:5173"), "http://localhost:5173");
  EXPECT_EQ(normal("https://app.example.com:8443"), "https://app.example.com:8443");
  EXPECT_EQ(normal("http://127.0.0.1:3000"), "http://127.0.0.1:3000");
  EXPECT_EQ(normal("http://[::1]:3000"), "http://[::1]:3000");
  EXPECT_EQ(normal("https://xn--bcher-kva.example"), "https://xn--bcher-kva.example");
  for (std::string_view bad : {"",
                               "null",
                               "app.example.com",
                               "ftp://app.example.com",
                               "https://",
                               "https://app.com/",
                               "https://app.com/path",
                               "https://app.com?x=1",
                               "https://app.com#top",
                               "https://user@app.com",
                               "https://*.example.com",
                               "*",
                               "https://app.com:0",
                               "https://app.com:65536",
                               "https://app.com:",
                               "https://app.com:80a",
                               "https://-app.com",
                               "https://app..com",
                               "https://app.com.",
                               "https://ap p.com",
                               "https://bücher.example",
                               "http://[::1",
                               "http://[xyz]",
                               "https://app_1.com"}) {
    std::string out, reason;
    EXPECT_FALSE(normalize_origin(bad, out, reason)) << bad << " -> " << out;
    EXPECT_FALSE(reason.empty()) << bad;
  }
  std::string out, reason;
  EXPECT_FALSE(normalize_origin("https://" + std::string(300, 'a') + ".com", out, reason));
}

}  // namespace
}  // namespace hsea::security
