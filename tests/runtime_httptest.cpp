// The runtime from outside: `hsea worker` runs the periodic tasks without HTTP, and a
// once-per-cluster task runs on one node although two processes share the database.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

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
  // The daily tasks first run a minute after start, on both processes at about the same time;
  // each claims the period in periodic_task_runs, and only the winner runs the task.
  std::this_thread::sleep_for(std::chrono::seconds(65));
  auto rows = testkit::sql(
      db.admin_url(), "SELECT name, count(*) FROM periodic_task_runs GROUP BY name ORDER BY 1");
  ASSERT_EQ(rows.size(), 2u) << server.output() << worker.output();
  EXPECT_EQ(rows[0][0], "audit-retention");
  EXPECT_EQ(rows[1][0], "tenant-purge");
  std::string logs = server.output() + worker.output();
  auto count = [&logs](const std::string& needle) {
    std::size_t n = 0;
    for (auto at = logs.find(needle); at != std::string::npos; at = logs.find(needle, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("\"message\":\"periodic task done\",\"task\":\"audit-retention\""), 1u) << logs;
  EXPECT_EQ(count("\"message\":\"periodic task done\",\"task\":\"tenant-purge\""), 1u) << logs;
}

}  // namespace
}  // namespace hsea
