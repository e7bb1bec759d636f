// The database module's registration: per-thread pools and their metrics.
#include <fmt/format.h>

#include <atomic>
#include <vector>

#include "core/config.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "runtime/registrar.hpp"

namespace hsea::db {
namespace {

std::optional<std::string> check_postgres_url(std::string& v) {
  if (!v.starts_with("postgresql://") && !v.starts_with("postgres://")) {
    return "must be a postgresql:// URL";
  }
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "db",
    {core::string_setting(&Settings::database_url, "HSEA_DATABASE_URL",
                          "postgresql://hsea_app:hsea_app@127.0.0.1:5432/hsea",
                          "PostgreSQL URL of the application role (created by `hsea migrate`)",
                          check_postgres_url, core::Show::kUrl),
     core::string_setting(&Settings::database_admin_url, "HSEA_DATABASE_ADMIN_URL",
                          "postgresql://postgres@127.0.0.1:5432/hsea",
                          "PostgreSQL URL of the owner role, used only by `hsea migrate`",
                          check_postgres_url, core::Show::kUrl),
     core::int_setting(&Settings::pool_size, "HSEA_DB_POOL_SIZE", "4", 1, 1000,
                       "PostgreSQL connections per thread"),
     core::int_setting(&Settings::batch_connections, "HSEA_DB_BATCH_CONNECTIONS", "2", 1, 1000,
                       "of those, how many may carry batches of one-statement calls at once (the "
                       "rest stay free for transactions); a second starts only while the "
                       "first one's batch has been out for 2 ms"),
     core::int_setting(&Settings::acquire_timeout_ms, "HSEA_DB_ACQUIRE_TIMEOUT_MS", "2000", 1,
                       600000, "wait for a free connection before answering 503"),
     core::int_setting(&Settings::connect_timeout_ms, "HSEA_DB_CONNECT_TIMEOUT_MS", "3000", 1,
                       600000, "PostgreSQL connect deadline"),
     core::int_setting(&Settings::statement_timeout_ms, "HSEA_DB_STATEMENT_TIMEOUT_MS", "5000", 1,
                       3600000, "server-side statement_timeout of every connection")}};

// Scrapes run on any thread, so they see each pool through an atomic pointer that its I/O
// thread publishes once the pool exists.
struct PoolRegistry {
  explicit PoolRegistry(int threads) : pools(static_cast<std::size_t>(threads)) {}
  std::vector<std::atomic<Pool*>> pools;
};

void render(const PoolRegistry& registry, std::string& out) {
  PoolStats total;
  for (const auto& p : registry.pools) {
    const Pool* pool = p.load(std::memory_order_acquire);
    if (pool == nullptr) continue;
    PoolStats s = pool->stats();
    total.in_use += s.in_use;
    total.idle += s.idle;
    total.waiting += s.waiting;
    total.waits_total += s.waits_total;
    total.wait_timeouts_total += s.wait_timeouts_total;
    total.connects_total += s.connects_total;
    total.broken_total += s.broken_total;
    total.batches_total += s.batches_total;
    total.batched_total += s.batched_total;
    total.abandoned_total += s.abandoned_total;
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
                 "hsea_db_connections_dropped_total {}\n"
                 "# HELP hsea_db_batches_total Round trips that carried one-statement calls.\n"
                 "# TYPE hsea_db_batches_total counter\n"
                 "hsea_db_batches_total {}\n"
                 "# HELP hsea_db_batched_statements_total One-statement calls those carried.\n"
                 "# TYPE hsea_db_batched_statements_total counter\n"
                 "hsea_db_batched_statements_total {}\n"
                 "# HELP hsea_db_abandoned_replies_total Replies read and dropped because their "
                 "caller had left.\n"
                 "# TYPE hsea_db_abandoned_replies_total counter\n"
                 "hsea_db_abandoned_replies_total {}\n",
                 total.in_use, total.idle, total.waiting, total.waits_total,
                 total.wait_timeouts_total, total.connects_total, total.broken_total,
                 total.batches_total, total.batched_total, total.abandoned_total);
}

}  // namespace

Pool& pool() { return runtime::local<Pool>(); }

const core::Section<Settings>& settings_section() { return kSettings; }

void Register(runtime::Registrar& reg) {
  const Settings& settings = reg.settings(settings_section());
  check_query_names();
  auto& registry = reg.process(std::make_unique<PoolRegistry>(reg.config().threads));
  reg.per_thread<Pool>(
      "postgresql pool",
      [&settings, &registry](runtime::ThreadContext& t) {
        auto pool = std::make_unique<Pool>(
            t.io(),
            PoolOptions{
                .url = settings.database_url,
                .size = settings.pool_size,
                .acquire_timeout = std::chrono::milliseconds(settings.acquire_timeout_ms),
                .connect_timeout = std::chrono::milliseconds(settings.connect_timeout_ms),
                .statement_timeout = std::chrono::milliseconds(settings.statement_timeout_ms),
                .batch_connections = settings.batch_connections});
        if (static_cast<std::size_t>(t.index()) < registry.pools.size()) {
          registry.pools[static_cast<std::size_t>(t.index())].store(pool.get(),
                                                                    std::memory_order_release);
        }
        return pool;
      },
      [](Pool& pool) { pool.close(); });
  reg.metrics([&registry](std::string& out) { render(registry, out); });
}

}  // namespace hsea::db
