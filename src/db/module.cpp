// The database module's registration: per-thread pools and their metrics.
#include <fmt/format.h>

#include <atomic>
#include <vector>

#include "core/config.hpp"
#include "db/db.hpp"
#include "runtime/registrar.hpp"

namespace hsea::db {
namespace {

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
}

}  // namespace

Pool& pool() { return runtime::local<Pool>(); }

void Register(runtime::Registrar& reg) {
  check_query_names();
  const core::Config& config = reg.config();
  auto& registry = reg.process(std::make_unique<PoolRegistry>(config.threads));
  reg.per_thread<Pool>(
      "postgresql pool",
      [&config, &registry](runtime::ThreadContext& t) {
        auto pool = std::make_unique<Pool>(
            t.io(),
            PoolOptions{
                .url = config.database_url,
                .size = config.db_pool_size,
                .acquire_timeout = std::chrono::milliseconds(config.db_acquire_timeout_ms),
                .connect_timeout = std::chrono::milliseconds(config.db_connect_timeout_ms),
                .statement_timeout = std::chrono::milliseconds(config.db_statement_timeout_ms)});
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
