// Cost of the middleware chain alone (Google Benchmark): GET /health/live through every stage
// the server runs (request id, access log with metrics, security headers, deadline, routing,
// tenant resolution, authentication, authorization, data-access audit, body validation) to its
// trivial handler, on one io_context, no network and no database. A regression in the chain
// shows here without wrk. The access log's JSON lines go to /dev/null (stdout is redirected;
// the report goes to the original stdout).
//
// BM_ChainTenantRead / BM_ChainTenantReadEntitled: the cost of an entitlement check. Two
// trivial tenant routes, the second declaring billing::Feature{"audit_export"}, on one runtime
// I/O thread with the database pool, as a server runs them: the tenant's entitlement is read
// from the database once, then from the thread's cache. They need a database with the tenant
// (HSEA_DATABASE_URL, HSEA_BENCH_TENANT, the tenant's plan with audit_export: bench/run's billing
// section); without them they are skipped.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <iostream>
#include <optional>
#include <string>

#include "billing/billing.hpp"
#include "core/config.hpp"
#include "db/db.hpp"
#include "http/middleware.hpp"
#include "http/request_io.hpp"
#include "identity/access.hpp"
#include "identity/identity.hpp"
#include "jobs/jobs.hpp"
#include "ops/ops.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"
#include "security/security.hpp"

namespace {

using namespace hsea;
using boost::asio::awaitable;

struct Fixture {
  explicit Fixture(bool access_log) {
    config = core::load_config([](std::string_view) { return std::nullopt; }, false).value();
    config.access_log = access_log;
    runtime::Registrar registrar(config);
    ops::Register(registrar);
    security::Register(registrar);
    jobs::Register(registrar);  // identity declares its event types with it
    identity::Register(registrar);
    app.emplace(std::move(registrar).finish());
    app->started(nullptr);
    chain = app->chain();
    request.method = http::Method::kGet;
    request.target = request.path = "/health/live";
    request.headers = {{"host", "127.0.0.1:8080"}};
    request.remote_ip = "127.0.0.1";
  }
  core::Config config;
  std::optional<runtime::Application> app;
  http::Chain chain;
  http::Request request;
};

// One coroutine runs every iteration, as a server session runs its requests (bound to the
// cancellation signal its deadline steps emit, with the thread's deadline queue).
awaitable<void> loop(Fixture& f, benchmark::State& state, http::RequestIo* io) {
  for (auto _ : state) {
    http::RequestContext ctx(f.request);
    ctx.io = io;
    ctx.match = f.app->router.match(f.request.method, f.request.target);
    http::Response response = co_await f.chain.run(ctx);
    f.chain.after_response(ctx, response);
    if (response.status != 200) state.SkipWithError("not 200");
    benchmark::DoNotOptimize(response);
  }
  io->deadlines = nullptr;
}

void run(benchmark::State& state, bool access_log) {
  Fixture f(access_log);
  http::DeadlineQueue deadlines;
  http::RequestIo request_io;
  request_io.deadlines = &deadlines;
  boost::asio::io_context io(1);
  boost::asio::co_spawn(io, deadlines.watch(), boost::asio::detached);
  boost::asio::co_spawn(io, loop(f, state, &request_io),
                        boost::asio::bind_cancellation_slot(
                            request_io.cancel.slot(), [&io](std::exception_ptr) { io.stop(); }));
  io.run();
}

void BM_ChainHealthLive(benchmark::State& state) { run(state, true); }
void BM_ChainHealthLiveNoAccessLog(benchmark::State& state) { run(state, false); }

// ------------------------------------------------------------------ entitlement checks

awaitable<http::Response> tenant_read(http::RequestContext&) {
  co_return http::Response::text(200, "ok");
}

// The server's modules up to billing, with the database, and the two routes (the same but for
// the feature), run on a one-thread runtime.
struct TenantFixture {
  explicit TenantFixture(std::string tenant) {
    config = core::load_config([](std::string_view) { return std::nullopt; }, false).value();
    runtime::Registrar registrar(config);  // module settings (HSEA_DATABASE_URL) from the env
    db::Register(registrar);
    ops::Register(registrar);
    security::Register(registrar);
    jobs::Register(registrar);
    identity::Register(registrar);
    billing::Register(registrar);
    const identity::Access tenant_route{.tenant = true};
    registrar.route({.method = http::Method::kGet,
                     .path = "/bench/tenant-read",
                     .handler = tenant_read,
                     .policies = http::Policies(tenant_route)});
    registrar.route({.method = http::Method::kGet,
                     .path = "/bench/tenant-read-entitled",
                     .handler = tenant_read,
                     .policies = http::Policies(tenant_route, billing::Feature{"audit_export"})});
    app.emplace(std::move(registrar).finish());
    rt = std::make_unique<runtime::Runtime>(runtime::RuntimeOptions{.threads = 1},
                                            app->thread_services);
    rt->start();
    app->started(rt.get());
    chain = app->chain();
    request.method = http::Method::kGet;
    request.headers = {{"host", "127.0.0.1:8080"}, {"x-tenant-id", std::move(tenant)}};
    request.remote_ip = "127.0.0.1";
  }
  ~TenantFixture() { rt->stop(); }
  core::Config config;
  std::optional<runtime::Application> app;
  std::unique_ptr<runtime::Runtime> rt;
  http::Chain chain;
  http::Request request;
};

awaitable<http::Response> once(TenantFixture& f, http::RequestIo* io) {
  http::RequestContext ctx(f.request);
  ctx.io = io;
  ctx.match = f.app->router.match(f.request.method, f.request.target);
  http::Response response = co_await f.chain.run(ctx);
  f.chain.after_response(ctx, response);
  co_return response;
}

// On the runtime's thread: one request first (the entitlement's one query, then cached), then
// the timed loop; the benchmark's timer runs on this thread too.
awaitable<void> tenant_loop(TenantFixture& f, benchmark::State& state, http::RequestIo* io) {
  http::Response first = co_await once(f, io);
  if (first.status != 200) {
    state.SkipWithError(
        ("the first request answered " + std::to_string(first.status) + ": " + first.body).c_str());
  } else {
    for (auto _ : state) {
      http::Response response = co_await once(f, io);
      if (response.status != 200) state.SkipWithError("not 200");
      benchmark::DoNotOptimize(response);
    }
  }
  io->deadlines = nullptr;
}

void run_tenant(benchmark::State& state, const char* path) {
  const char* url = std::getenv("HSEA_DATABASE_URL");
  const char* tenant = std::getenv("HSEA_BENCH_TENANT");
  if (url == nullptr || tenant == nullptr) {
    state.SkipWithError("needs HSEA_DATABASE_URL and HSEA_BENCH_TENANT (bench/run's billing)");
    for (auto _ : state) {
    }
    return;
  }
  TenantFixture f(tenant);
  f.request.target = f.request.path = path;
  http::DeadlineQueue deadlines;
  http::RequestIo request_io;
  request_io.deadlines = &deadlines;
  std::promise<void> done;
  f.rt->post(0, [&] {
    boost::asio::io_context& io = runtime::ThreadContext::current()->io();
    boost::asio::co_spawn(io, deadlines.watch(), boost::asio::detached);
    boost::asio::co_spawn(
        io, tenant_loop(f, state, &request_io),
        boost::asio::bind_cancellation_slot(request_io.cancel.slot(),
                                            [&done](std::exception_ptr) { done.set_value(); }));
  });
  done.get_future().wait();
}

void BM_ChainTenantRead(benchmark::State& state) { run_tenant(state, "/bench/tenant-read"); }
void BM_ChainTenantReadEntitled(benchmark::State& state) {
  run_tenant(state, "/bench/tenant-read-entitled");
}

}  // namespace

int main(int argc, char** argv) {
  // The report on the original stdout, the access log (stdout) into /dev/null.
  int report_fd = dup(STDOUT_FILENO);
  std::fflush(stdout);
  int null_fd = open("/dev/null", O_WRONLY);
  dup2(null_fd, STDOUT_FILENO);
  close(null_fd);
  std::ofstream report("/proc/self/fd/" + std::to_string(report_fd));
  // HSEA_BENCH_ITERATIONS=N runs a fixed number of iterations (for callgrind's counts).
  const char* fixed = std::getenv("HSEA_BENCH_ITERATIONS");
  for (auto [name, fn] :
       {std::pair{"BM_ChainHealthLive", &BM_ChainHealthLive},
        std::pair{"BM_ChainHealthLiveNoAccessLog", &BM_ChainHealthLiveNoAccessLog},
        std::pair{"BM_ChainTenantRead", &BM_ChainTenantRead},
        std::pair{"BM_ChainTenantReadEntitled", &BM_ChainTenantReadEntitled}}) {
    auto* b = benchmark::RegisterBenchmark(name, fn);
    if (fixed != nullptr) b->Iterations(std::atoll(fixed));
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::ConsoleReporter reporter;
  reporter.SetOutputStream(&report);
  reporter.SetErrorStream(&std::cerr);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
