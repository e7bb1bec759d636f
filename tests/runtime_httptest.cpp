// The runtime from outside: `hsea worker` runs the periodic tasks without HTTP, and a
// once-per-cluster task (a scheduled job) runs once although two processes share the database.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

TEST(Worker, RunsThePeriodicTasksWithoutHttpAndStopsCleanly) {
  testkit::TestDatabase db;
  testkit::TestServer worker(db, {}, "worker");
  EXPECT_EQ(worker.port(), 0);
  std::string out = worker.output();
  EXPECT_NE(out.find("worker running"), std::string::npos) << out;
  EXPECT_EQ(out.find("listening"), std::string::npos) << out;
  EXPECT_EQ(worker.stop(SIGTERM), 0) << worker.output();
  EXPECT_NE(worker.output().find("\"message\":\"stopped\""), std::string::npos) << worker.output();
}

TEST(Worker, AServerAndAWorkerOnOneDatabaseRunEachDailyTaskOnce) {
  testkit::TestDatabase db;
  testkit::TestServer server(db);
  testkit::TestServer worker(db, {}, "worker");
  // Both processes' schedulers enqueue today's period of every daily task a second after start;
  // the period's unique key lets one job through, and one worker runs it.
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < 100; ++i) {
    rows = testkit::sql(db.admin_url(),
                        "SELECT kind, status, attempts FROM jobs WHERE tenant_id IS NULL "
                        "ORDER BY kind");
    bool done = rows.size() == 4;
    for (const auto& row : rows) done = done && row[1] == "succeeded";
    if (done) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_EQ(rows.size(), 4u) << server.output() << worker.output();
  EXPECT_EQ(rows[0][0], "jobs.prune");
  EXPECT_EQ(rows[1][0], "periodic.audit-retention");
  EXPECT_EQ(rows[2][0], "periodic.tenant-purge");
  EXPECT_EQ(rows[3][0], "periodic.webhooks-prune");
  for (const auto& row : rows) {
    EXPECT_EQ(row[1], "succeeded") << row[0];
    EXPECT_EQ(row[2], "1") << row[0] << " ran more than once";
  }
}

}  // namespace
}  // namespace hsea
