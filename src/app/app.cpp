#include "app/app.hpp"

#include <fmt/format.h>

#include <cstdio>

#include "billing/billing.hpp"
#include "billing/invoices.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/server.hpp"
#include "identity/identity.hpp"
#include "jobs/jobs.hpp"
#include "mail/mail.hpp"
#include "metering/metering.hpp"
#include "ops/ops.hpp"
#include "ratelimit/ratelimit.hpp"
#include "redis/client.hpp"
#include "runtime/registrar.hpp"
#include "security/security.hpp"
#include "tenancy/tenancy.hpp"
#include "web/web.hpp"
#include "webhooks/webhooks.hpp"

namespace hsea::app {
namespace {

runtime::RuntimeOptions runtime_options(const core::Config& config) {
  int cores = std::max(1, config.threads);
  return runtime::RuntimeOptions{
      .threads = config.threads,
      // Argon2id is memory-hard: half the cores, at nice 19, so hashing yields the cores to
      // request threads but is never starved (see WorkPoolOptions::nice).
      .cpu = {.name = "cpu",
              .threads = config.blocking_threads,
              .capacity = 64 * config.blocking_threads,
              .nice = 19},
      // Blocking I/O waits more than it computes: more threads, bounded queue.
      .io = {.name = "io", .threads = std::max(2, cores), .capacity = 256, .nice = 0}};
}

// Starts the runtime and the modules' start hooks; false (logged) when that fails.
bool start(runtime::Runtime& rt, runtime::Application& app) {
  try {
    rt.start();
    app.started(&rt);
    return true;
  } catch (const std::exception& e) {
    log::error("cannot start", {{"error", e.what()}});
    std::fprintf(stderr, "hsea: %s\n", e.what());
    return false;
  }
}

}  // namespace

void register_modules(runtime::Registrar& reg) {
  db::Register(reg);
  redis::Register(reg);
  ops::Register(reg);
  security::Register(reg);
  jobs::Register(reg);
  mail::Register(reg);
  webhooks::Register(reg);
  identity::Register(reg);
  tenancy::Register(reg);
  // After identity: its tenant-creation hook and its admission step come first.
  billing::Register(reg);
  billing::register_invoices(reg);
  // After identity and billing: authorization and the plan's features are checked first.
  ratelimit::Register(reg);
  // After the limiter (quotas count what it let through) and billing (the plans' quotas).
  metering::Register(reg);
  // Last: its edge step answers only what no route matched.
  web::Register(reg);
}

runtime::Application configure(core::Config& config, const core::EnvLookup& env) {
  runtime::Registrar registrar(config, env);
  register_modules(registrar);
  runtime::Application app = std::move(registrar).finish();
  if (config.max_connections == 0) {
    config.max_connections = core::default_max_connections(
        core::open_file_limit(), config.threads, app.settings.get<db::Settings>().pool_size);
  }
  return app;
}

int serve(runtime::Application& app) {
  const core::Config& config = app.config;
  app.role = runtime::Role::kServe;
  runtime::Runtime rt(runtime_options(config), app.thread_services);
  if (!start(rt, app)) return 1;
  const http::Chain chain = app.chain();
  http::Server server(
      {.config = config, .router = app.router, .chain = chain, .io = rt.io_contexts()});
  try {
    server.bind();
  } catch (const std::exception& e) {
    log::error("cannot start", {{"error", e.what()}});
    std::fprintf(stderr, "hsea: %s\n", e.what());
    return 1;
  }
  server.start();
  app.start_tasks(rt);
  log::info("listening", {{"url", fmt::format("http://{}:{}", config.http_host, server.port())},
                          {"threads", config.threads}});
  log::flush();
  std::fprintf(stderr, "hsea: listening on http://%s:%u\n", config.http_host.c_str(),
               static_cast<unsigned>(server.port()));

  int signal = runtime::wait_for_shutdown_signal();
  log::info("shutting down",
            {{"signal", signal}, {"grace_seconds", config.shutdown_grace_seconds}});
  server.drain(std::chrono::seconds(config.shutdown_grace_seconds));
  rt.stop();  // before `server` goes: unfinished sessions unregister from it
  log::info("stopped");
  log::flush();
  return 0;
}

int work(runtime::Application& app) {
  app.role = runtime::Role::kWorker;
  runtime::Runtime rt(runtime_options(app.config), app.thread_services);
  if (!start(rt, app)) return 1;
  app.start_tasks(rt);
  log::info("worker running", {{"threads", app.config.threads}, {"tasks", app.tasks.size()}});
  log::flush();
  std::fprintf(stderr, "hsea: worker running %zu periodic tasks\n", app.tasks.size());
  int signal = runtime::wait_for_shutdown_signal();
  log::info("shutting down", {{"signal", signal}});
  rt.stop();
  log::info("stopped");
  log::flush();
  return 0;
}

}  // namespace hsea::app
