// The server survives a real PostgreSQL restart without being restarted itself. The test runs
// its own cluster (scripts/lib/services.sh, the same code scripts/test uses) so that stopping
// it disturbs no other test.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

int services(const std::string& commands) {
  std::string script = "SVC_NAME=restart-test; source " + std::string(HSEA_SOURCE_DIR) +
                       "/scripts/lib/services.sh; " + commands;
  std::string line = "bash -c '" + script + "' >/dev/null 2>&1";
  return std::system(line.c_str());
}

TEST(PostgresRestart, ServerRecoversWithoutRestart) {
  char dir_template[] = "/tmp/hsea-restart-XXXXXX";
  std::string dir = mkdtemp(dir_template);
  std::string cluster = dir + "/pg";
  chmod(dir.c_str(), 0755);
  int port = free_port();
  std::string start = "pg_start " + cluster + " " + std::to_string(port);
  ASSERT_EQ(services(start + " && pg_ensure_db " + std::to_string(port) + " hsea"), 0);
  std::string admin = "postgresql://postgres@127.0.0.1:" + std::to_string(port) + "/hsea";
  std::string app = "postgresql://hsea_restart:pw@127.0.0.1:" + std::to_string(port) + "/hsea";
  auto migrated = testkit::run_hsea(
      {"migrate"}, {{"HSEA_DATABASE_ADMIN_URL", admin}, {"HSEA_DATABASE_URL", app}});
  ASSERT_EQ(migrated.exit_code, 0) << migrated.output;

  testkit::TestDatabase unused;  // TestServer's signature; the env below points elsewhere
  {
    // The poll is a minute: only NOTIFY (and the listener's look after reconnecting) wakes the
    // worker quickly.
    testkit::TestServer server(unused, {{"HSEA_DATABASE_URL", app},
                                        {"HSEA_DATABASE_ADMIN_URL", admin},
                                        {"HSEA_DB_CONNECT_TIMEOUT_MS", "500"},
                                        {"HSEA_JOB_POLL_MS", "60000"}});
    ASSERT_EQ(testkit::http("GET", server.url("/health")).status, 200);
    // A job queued before the restart, due after it.
    std::string before = testkit::sql(
        admin, "SELECT jobs_enqueue('jobs.prune', '{}', 0, 4000, 3, 'before-restart')")[0][0];

    ASSERT_EQ(services("pg_stop " + cluster), 0);
    auto down = testkit::http("GET", server.url("/health"));
    EXPECT_EQ(down.status, 503) << down.body;
    EXPECT_EQ(testkit::http("GET", server.url("/health/live")).status, 200);

    ASSERT_EQ(services(start), 0);
    int status = 0;
    for (int i = 0; i < 50 && status != 200; ++i) {
      status = testkit::http("GET", server.url("/health")).status;
      if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    EXPECT_EQ(status, 200) << "the server did not recover after PostgreSQL came back";
    // Database-backed routes work again too.
    auto signup = testkit::http("POST", server.url("/api/auth/signup"),
                                R"({"email":"back@example.com","password":"after the restart",)"
                                R"("name":"B","organization_name":"Back"})");
    EXPECT_EQ(signup.status, 201) << signup.body;
    // The job worker resumes without a restart: the job from before runs, and a new one is
    // picked up at once (the listener listens again).
    std::string after = testkit::sql(
        admin, "SELECT jobs_enqueue('jobs.prune', '{}', 0, 0, 3, 'after-restart')")[0][0];
    auto status_of = [&admin](const std::string& id) {
      return testkit::sql(admin, "SELECT status FROM jobs WHERE id = $1", {id})[0][0];
    };
    for (int i = 0;
         i < 100 && (status_of(before) != "succeeded" || status_of(after) != "succeeded"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_EQ(status_of(after), "succeeded") << server.output();
    EXPECT_EQ(status_of(before), "succeeded") << server.output();
  }
  services("pg_stop " + cluster);
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
}  // namespace hsea
