#include "app/app.hpp"

#include <fmt/format.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "app/shared.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/middleware.hpp"
#include "http/server.hpp"
#include "identity/identity.hpp"
#include "ops/metrics.hpp"
#include "ops/ops.hpp"
#include "redis/client.hpp"
#include "security/audit.hpp"
#include "security/security.hpp"
#include "tenancy/tenancy.hpp"

namespace hsea::app {
namespace {

// What one I/O thread owns. Lives until after the server is destroyed, so connections still
// held by unfinished requests can always return to their pool.
struct ThreadResources {
  std::unique_ptr<db::Pool> db;
  std::unique_ptr<redis::Client> redis;
};

// Scrapes run on any thread, so they see each pool through an atomic pointer that its I/O
// thread publishes once the pool exists.
void add_pool_metrics(ops::Metrics& metrics, const std::vector<std::atomic<db::Pool*>>& pools) {
  metrics.add_source([&pools](std::string& out) {
    db::PoolStats total;
    for (const auto& p : pools) {
      const db::Pool* pool = p.load(std::memory_order_acquire);
      if (pool == nullptr) continue;
      db::PoolStats s = pool->stats();
      total.in_use += s.in_use;
      total.idle += s.idle;
      total.waiting += s.waiting;
      total.waits_total += s.waits_total;
      total.wait_timeouts_total += s.wait_timeouts_total;
      total.connects_total += s.connects_total;
      total.broken_total += s.broken_total;
    }
    fmt::format_to(std::back_inserter(out),
                   "# HELP hsea_db_pool_connections PostgreSQL connections by state.\n"
                   "# TYPE hsea_db_pool_connections gauge\n"
                   "hsea_db_pool_connections{{state=\"in_use\"}} {}\n"
                   "hsea_db_pool_connections{{state=\"idle\"}} {}\n"
                   "# HELP hsea_db_pool_waiting Requests waiting for a connection now.\n"
                   "# TYPE hsea_db_pool_waiting gauge\n"
                   "hsea_db_pool_waiting {}\n"
                   "# HELP hsea_db_pool_waits_total Acquisitions that had to wait.\n"
                   "# TYPE hsea_db_pool_waits_total counter\n"
                   "hsea_db_pool_waits_total {}\n"
                   "# HELP hsea_db_pool_wait_timeouts_total Waits that passed the deadline.\n"
                   "# TYPE hsea_db_pool_wait_timeouts_total counter\n"
                   "hsea_db_pool_wait_timeouts_total {}\n"
                   "# HELP hsea_db_connects_total Connections opened.\n"
                   "# TYPE hsea_db_connects_total counter\n"
                   "hsea_db_connects_total {}\n"
                   "# HELP hsea_db_connections_dropped_total Connections dropped as broken.\n"
                   "# TYPE hsea_db_connections_dropped_total counter\n"
                   "hsea_db_connections_dropped_total {}\n",
                   total.in_use, total.idle, total.waiting, total.waits_total,
                   total.wait_timeouts_total, total.connects_total, total.broken_total);
  });
}

// Daily maintenance, a minute after start and then every 24 hours (one thread does it):
// audit-log retention and removal of tenants whose deletion grace period is over.
boost::asio::awaitable<void> daily_maintenance(db::Pool& db, int days) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  auto wait = std::chrono::minutes(1);
  while (true) {
    timer.expires_after(wait);
    co_await timer.async_wait(boost::asio::use_awaitable);
    wait = std::chrono::hours(24);
    try {
      std::int64_t removed = co_await security::prune(db, days);
      log::info("audit log pruned", {{"removed", removed}, {"retention_days", days}});
    } catch (const std::exception& e) {
      log::warn("audit log pruning failed", {{"error", e.what()}});
    }
    try {
      std::int64_t purged = co_await tenancy::purge_due_tenants(db);
      if (purged > 0) log::info("deleted tenants purged", {{"tenants", purged}});
    } catch (const std::exception& e) {
      log::warn("tenant purge failed", {{"error", e.what()}});
    }
  }
}

}  // namespace

void register_modules(App& app) {
  ops::Register(app);
  identity::Register(app);
  identity::RegisterApiKeys(app);
  tenancy::Register(app);
  security::Register(app);
}

int serve(App& app) {
  const core::Config& config = app.config;
  Shared shared(config.blocking_threads, config.login_failures_per_account,
                config.login_failures_per_ip);
  std::atomic<bool> stopping{false};
  bool keys_loaded = false;
  try {
    shared.set_keys(
        identity::KeyStore::load(config.database_url, config.secret_key, config.public_url));
    keys_loaded = true;
  } catch (const std::exception& e) {
    log::warn("cannot load signing keys yet; retrying in the background", {{"error", e.what()}});
  }
  std::thread key_loader([&] {
    // Retries until PostgreSQL answers, so the server can start before its database.
    for (int attempt = 1; !keys_loaded && !stopping; ++attempt) {
      try {
        shared.set_keys(
            identity::KeyStore::load(config.database_url, config.secret_key, config.public_url));
        return;
      } catch (const std::exception& e) {
        if (attempt % 30 == 0) log::warn("still cannot load signing keys", {{"error", e.what()}});
      }
      for (int i = 0; i < 20 && !stopping; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  struct JoinLoader {
    std::atomic<bool>& stopping;
    std::thread& thread;
    ~JoinLoader() {
      stopping = true;
      thread.join();
    }
  } join_loader{stopping, key_loader};
  ops::Metrics metrics(config.threads, app.router);
  std::vector<std::unique_ptr<ThreadResources>> threads(config.threads);
  std::vector<std::atomic<db::Pool*>> pools(config.threads);
  add_pool_metrics(metrics, pools);

  http::Server server({
      .config = config,
      .router = app.router,
      .metrics = metrics,
      .chain = {http::request_id, http::access_log, http::security_headers, http::error_mapping,
                http::deadline, http::routing, identity::resolve_tenant, identity::authenticate,
                identity::authorize, security::record_access, security::validate_body},
      .outer_layers = 4,  // request id .. error mapping also wrap requests refused unread
      .start_thread =
          [&](int index, boost::asio::io_context& io) {
            auto resources = std::make_unique<ThreadResources>();
            resources->db = std::make_unique<db::Pool>(
                io, db::PoolOptions{
                        .url = config.database_url,
                        .size = config.db_pool_size,
                        .acquire_timeout = std::chrono::milliseconds(config.db_acquire_timeout_ms),
                        .connect_timeout = std::chrono::milliseconds(config.db_connect_timeout_ms),
                        .statement_timeout =
                            std::chrono::milliseconds(config.db_statement_timeout_ms)});
            if (!config.redis_url.empty()) {
              resources->redis = std::make_unique<redis::Client>(
                  io, config.redis_url, std::chrono::milliseconds(config.redis_timeout_ms));
              resources->redis->start();
            }
            boost::asio::co_spawn(
                io,
                identity::flush_api_key_usage_forever(*resources->db, config.usage_flush_seconds),
                [](std::exception_ptr) {});
            if (index == 0) {
              boost::asio::co_spawn(io,
                                    daily_maintenance(*resources->db, config.audit_retention_days),
                                    [](std::exception_ptr) {});
            }
            http::ThreadServices services{.thread_index = index,
                                          .db = resources->db.get(),
                                          .redis = resources->redis.get(),
                                          .shared = &shared};
            pools[index].store(resources->db.get(), std::memory_order_release);
            threads[index] = std::move(resources);
            return services;
          },
      .stop_thread =
          [&](int index) {
            // On the thread, while its io_context still exists: the Redis client's sockets
            // and timers belong to it.
            threads[index]->redis.reset();
            threads[index]->db->close();
          },
  });
  try {
    server.bind();
  } catch (const std::exception& e) {
    log::error("cannot start", {{"error", e.what()}});
    std::fprintf(stderr, "hsea: %s\n", e.what());
    return 1;
  }
  log::info("listening", {{"url", fmt::format("http://{}:{}", config.http_host, server.port())},
                          {"threads", config.threads}});
  log::flush();
  std::fprintf(stderr, "hsea: listening on http://%s:%u\n", config.http_host.c_str(),
               static_cast<unsigned>(server.port()));
  return server.run();
}

}  // namespace hsea::app
