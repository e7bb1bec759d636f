#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/chrono.h>
#include <strings.h>

#include <algorithm>
#include <chrono>
#include <string_view>

#include "core/build_info.hpp"
#include "core/config.hpp"
#include "core/crypto.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "ops/metrics.hpp"
#include "ops/ops.hpp"
#include "redis/client.hpp"
#include "runtime/registrar.hpp"

namespace hsea::ops {
namespace {

using boost::asio::awaitable;
using http::RequestContext;
using http::Response;

HSEA_QUERY kPing{"health_ping", "SELECT 1"};

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

awaitable<Response> live(RequestContext&) { co_return Response::json(200, R"({"status":"ok"})"); }

awaitable<Response> health(RequestContext& ctx) {
  boost::json::object checks;
  bool healthy = true;
  // Redis only shares rate-limit buckets (and caches): while it is down each node limits on its
  // own (fail open to per-node limits), so the node still serves and says so: 200 "degraded".
  bool degraded = false;
  {
    auto start = std::chrono::steady_clock::now();
    boost::json::object check;
    try {
      co_await db::pool().query(kPing);
      check["status"] = "up";
    } catch (const db::Error& e) {
      healthy = false;
      check["status"] = "down";
      log::warn("health: database down", {{"request_id", ctx.request_id}, {"error", e.what()}});
    }
    check["latency_ms"] = milliseconds_since(start);
    checks["database"] = std::move(check);
  }
  if (redis::Client* redis = redis::client(); redis != nullptr) {
    auto start = std::chrono::steady_clock::now();
    boost::json::object check;
    try {
      std::vector<std::string> ping{std::string("PING")};
      auto reply = co_await redis->command(std::move(ping));
      check["status"] = reply.is_error() ? std::string_view("down") : std::string_view("up");
      degraded = reply.is_error();
    } catch (const redis::Unavailable& e) {
      degraded = true;
      check["status"] = "down";
    }
    if (degraded) check["rate_limits"] = "per node";
    check["latency_ms"] = milliseconds_since(start);
    checks["redis"] = std::move(check);
  }
  boost::json::object body;
  // (string_view, not a literal: g++ 12 miscompiles ?: on arrays inside coroutines)
  body["status"] = !healthy   ? std::string_view("unavailable")
                   : degraded ? std::string_view("degraded")
                              : std::string_view("ok");
  body["checks"] = std::move(checks);
  co_return Response::json(healthy ? 200 : 503, boost::json::serialize(body));
}

// In production /metrics and /status are for the operator's scraper: they need
// `Authorization: Bearer <HSEA_METRICS_TOKEN>` (401 otherwise), and without a configured token
// they do not exist (404, as for any unknown path). In development and test they stay open.
// The token is compared through its SHA-256, so neither its content nor its length leaks.
// Set when the runtime starts: the request metrics (they label by route) and the application
// whose modules contribute metric sources.
std::optional<std::string> check_metrics_token(std::string& v) {
  if (!v.empty() && v.size() < 16) return "must be at least 16 bytes";
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "ops",
    {core::string_setting(&Settings::metrics_token, "HSEA_METRICS_TOKEN", "(unset)",
                          "production: /metrics and /status need Authorization: Bearer <token> "
                          "(at least 16 bytes); unset, they answer 404 there",
                          check_metrics_token, core::Show::kSecret)}};

struct State {
  const core::Config* config = nullptr;
  const Settings* settings = nullptr;
  std::unique_ptr<Metrics> metrics;
  const runtime::Application* app = nullptr;
};
State g_state;

void require_metrics_token(const RequestContext& ctx) {
  const core::Config& config = *g_state.config;
  if (!config.production()) return;
  const std::string& expected = g_state.settings->metrics_token;
  if (expected.empty()) {
    throw core::ApiError(core::ErrorCode::kNotFound, "No resource at " + ctx.request.path + ".");
  }
  std::string_view authorization = ctx.request.header("authorization");
  std::string_view token;
  if (authorization.size() > 7 && strncasecmp(authorization.data(), "bearer ", 7) == 0) {
    token = authorization.substr(7);
  }
  if (token.empty() ||
      !core::constant_time_equal(core::sha256_hex(token), core::sha256_hex(expected))) {
    throw core::ApiError(core::ErrorCode::kUnauthorized,
                         "Send the metrics token: Authorization: Bearer <HSEA_METRICS_TOKEN>.");
  }
}

std::chrono::system_clock::time_point g_started = std::chrono::system_clock::now();

awaitable<Response> status(RequestContext& ctx) {
  require_metrics_token(ctx);
  const core::BuildInfo& build = core::build_info();
  auto uptime = std::chrono::duration<double>(std::chrono::system_clock::now() - g_started);
  boost::json::object body;
  body["version"] = build.version;
  body["git_commit"] = build.git_commit;
  body["build_time"] = build.build_time;
  body["started_at"] = fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                                   std::chrono::time_point_cast<std::chrono::seconds>(g_started));
  body["uptime_seconds"] = uptime.count();
  co_return Response::json(200, boost::json::serialize(body));
}

awaitable<Response> metrics(RequestContext& ctx) {
  require_metrics_token(ctx);
  std::string text = g_state.metrics ? g_state.metrics->render() : std::string();
  if (g_state.app != nullptr) g_state.app->render_metrics(text);
  co_return Response::text(200, std::move(text), "text/plain; version=0.0.4; charset=utf-8");
}

// One JSON log line and the request metrics per request, problem code included.
void access_log(http::RequestContext& ctx, Response& response) {
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.started).count();
  runtime::ThreadContext* thread = runtime::ThreadContext::current();
  if (g_state.metrics) {
    g_state.metrics->record_request(thread != nullptr ? thread->index() : 0, ctx.route(),
                                    ctx.request.method, response.status, seconds);
  }
  if (g_state.config == nullptr || g_state.config->access_log) {
    const http::Route* route = ctx.route();
    log::info("request", {{"request_id", ctx.request_id},
                          {"trace_id", ctx.trace_id},
                          {"tenant_id", ctx.tenant_id},
                          {"method", http::method_name(ctx.request.method)},
                          {"path", ctx.request.path},
                          {"route", route ? std::string_view(route->path) : "unmatched"},
                          {"status", response.status},
                          {"problem", response.problem_code},
                          {"duration_ms", seconds * 1000.0},
                          {"bytes", response.body.size()},
                          {"remote_ip", ctx.request.remote_ip}});
  }
}

}  // namespace

void Register(runtime::Registrar& reg) {
  g_started = std::chrono::system_clock::now();
  g_state.settings = &reg.settings(kSettings);
  g_state.config = &reg.config();
  reg.middleware({.name = "access-log", .stage = http::Stage::kEdge, .after = access_log});
  reg.route({.method = http::Method::kGet, .path = "/health/live", .handler = live});
  reg.route({.method = http::Method::kGet, .path = "/health", .handler = health});
  reg.route({.method = http::Method::kGet, .path = "/status", .handler = status});
  reg.route({.method = http::Method::kGet, .path = "/metrics", .handler = metrics});
  int threads = reg.config().threads;
  reg.on_start([threads](runtime::Application& app, runtime::Runtime*) {
    g_state.metrics = std::make_unique<Metrics>(std::max(threads, 1), app.router);
    g_state.app = &app;
  });
}

}  // namespace hsea::ops
