// The storage_bytes gauge against a real PostgreSQL: record_storage_change (the file store's
// hook) moves only its own tenant's gauge, in its caller's transaction, never below zero; the
// measurement sums each tenant's rows and any table's size_bytes column.
#include <gtest/gtest.h>

#include "core/ids.hpp"
#include "db/db.hpp"
#include "metering/metering.hpp"
#include "testkit/async.hpp"
#include "testkit/testkit.hpp"

namespace hsea::metering {
namespace {

using boost::asio::awaitable;
using testkit::sql;

class MeteringStorage : public ::testing::Test {
 protected:
  void SetUp() override {
    tenant_a = core::uuid_v7();
    tenant_b = core::uuid_v7();
    sql(db.admin_url(),
        "INSERT INTO tenants (id, slug, name) VALUES ($1, 'a', 'A'), ($2, 'b', 'B')",
        {tenant_a, tenant_b});
  }
  std::string one(const std::string& statement, const std::vector<std::string>& params = {}) {
    auto rows = sql(db.admin_url(), statement, params);
    return rows.empty() || rows[0].empty() ? "" : rows[0][0];
  }
  std::string gauge(const std::string& tenant) {
    return one("SELECT value FROM usage_gauges WHERE tenant_id = $1 AND meter = 'storage_bytes'",
               {tenant});
  }
  testkit::TestDatabase db;
  boost::asio::io_context io;
  std::string tenant_a, tenant_b;
};

awaitable<void> change(db::Pool& pool, std::string tenant, std::int64_t delta, bool commit) {
  db::Transaction tx = co_await pool.begin(db::tenant_scope(tenant));
  co_await record_storage_change(tx, delta);
  if (commit) co_await tx.commit();
}

TEST_F(MeteringStorage, ARecordedChangeMovesOnlyItsTenantsGaugeInItsTransaction) {
  db::Pool pool(io, db::PoolOptions{.url = db.app_url(), .size = 1});
  testkit::run_sync(io, change(pool, tenant_a, 5000, true));
  EXPECT_EQ(gauge(tenant_a), "5000");
  EXPECT_EQ(gauge(tenant_b), "") << "B's gauge is not A's";
  testkit::run_sync(io, change(pool, tenant_a, -2000, true));
  EXPECT_EQ(gauge(tenant_a), "3000");
  testkit::run_sync(io, change(pool, tenant_a, 100, false));
  EXPECT_EQ(gauge(tenant_a), "3000") << "a rolled-back store changes nothing";
  testkit::run_sync(io, change(pool, tenant_a, -10000, true));
  EXPECT_EQ(gauge(tenant_a), "0") << "never below zero";
  // Each value is also an event: the history, and the rollup's peak per day.
  EXPECT_EQ(one("SELECT string_agg(quantity::text, ',' ORDER BY recorded_at, quantity DESC) FROM "
                "usage_events WHERE tenant_id = $1 AND meter = 'storage_bytes'",
                {tenant_a}),
            "5000,3000,0");
  sql(db.admin_url(), "SELECT usage_rollup()");
  EXPECT_EQ(one("SELECT quantity FROM usage_rollups WHERE tenant_id = $1 AND granularity = 'day' "
                "AND meter = 'storage_bytes'",
                {tenant_a}),
            "5000")
      << "a gauge rolls up to its peak, not a sum";
}

TEST_F(MeteringStorage, TheMeasurementSumsEachTenantsRowsAndSizeBytes) {
  // A file store's table, as metering.hpp asks of one: each object's size in size_bytes.
  sql(db.admin_url(), "CREATE TABLE test_files (tenant_id uuid NOT NULL, size_bytes bigint)");
  sql(db.admin_url(), "INSERT INTO test_files VALUES ($1, 1000000), ($1, 500000)", {tenant_a});
  sql(db.admin_url(),
      "INSERT INTO audit_logs (tenant_id, id, actor_type, actor_id, action) "
      "VALUES ($1, uuid_v7(), 'job', '', 'test.row')",
      {tenant_b});
  EXPECT_EQ(one("SELECT usage_storage_measure()"), one("SELECT count(*) FROM tenants"));
  long a = std::stol(gauge(tenant_a)), b = std::stol(gauge(tenant_b));
  EXPECT_GT(a, 1500000) << "the files' bytes and their rows";
  EXPECT_LT(a, 1501000);
  EXPECT_GT(b, 0) << "B's audit row";
  EXPECT_LT(b, 2000) << "A's files are not B's";
  EXPECT_EQ(one("SELECT count(*) FROM usage_events WHERE meter = 'storage_bytes' AND "
                "tenant_id IN ($1, $2)",
                {tenant_a, tenant_b}),
            "2");
}

}  // namespace
}  // namespace hsea::metering
