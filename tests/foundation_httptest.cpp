// Black-box tests of the foundation: the real `hsea` binary against a real PostgreSQL.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using testkit::http;
using testkit::TestDatabase;
using testkit::TestServer;

using testkit::json_of;

class Foundation : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    server_ = new TestServer(*db_, {{"HSEA_MAX_BODY_BYTES", "1024"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }
  static TestDatabase* db_;
  static TestServer* server_;
};
TestDatabase* Foundation::db_ = nullptr;
TestServer* Foundation::server_ = nullptr;

TEST_F(Foundation, LivenessAndHealth) {
  auto live = http("GET", server_->url("/health/live"));
  EXPECT_EQ(live.status, 200);
  EXPECT_EQ(json_of(live).at("status").as_string(), "ok");

  auto health = http("GET", server_->url("/health"));
  EXPECT_EQ(health.status, 200) << health.body;
  auto body = json_of(health);
  EXPECT_EQ(body.at("checks").as_object().at("database").as_object().at("status").as_string(),
            "up");
}

TEST_F(Foundation, StatusReportsBuild) {
  auto r = http("GET", server_->url("/status"));
  ASSERT_EQ(r.status, 200);
  auto body = json_of(r);
  for (const char* key : {"version", "git_commit", "build_time", "started_at", "uptime_seconds"}) {
    EXPECT_TRUE(body.contains(key)) << key;
  }
}

TEST_F(Foundation, EveryResponseCarriesRequestIdAndSecurityHeaders) {
  auto r = http("GET", server_->url("/health/live"), "", {"X-Request-Id: abc-123"});
  EXPECT_EQ(r.header("x-request-id"), "abc-123");
  EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  EXPECT_EQ(r.header("x-frame-options"), "DENY");
  EXPECT_FALSE(r.header("content-security-policy").empty());
  EXPECT_FALSE(r.header("referrer-policy").empty());
  auto generated = http("GET", server_->url("/api/nope"));
  EXPECT_EQ(generated.header("x-request-id").size(), 36u);
  EXPECT_EQ(json_of(generated).at("request_id").as_string(), generated.header("x-request-id"));
}

TEST_F(Foundation, UnknownPathIs404Problem) {
  auto r = http("GET", server_->url("/api/v1/does-not-exist"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
  auto body = json_of(r);
  EXPECT_EQ(body.at("status").as_int64(), 404);
  EXPECT_EQ(body.at("code").as_string(), "not_found");
}

TEST_F(Foundation, WrongMethodIs405WithAllow) {
  auto r = http("DELETE", server_->url("/health"));
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
}

// The status line and header fields of one HTTP/1.1 response inside raw bytes read off a socket.
struct RawHead {
  std::string status_line;
  std::map<std::string, std::string> headers;  // lower-case names
  std::size_t end = 0;                         // just past the blank line ending the header block
};

std::optional<RawHead> raw_head_at(const std::string& bytes, std::size_t from) {
  std::size_t blank = bytes.find("\r\n\r\n", from);
  if (blank == std::string::npos) return std::nullopt;
  RawHead head;
  head.end = blank + 4;
  std::istringstream lines(bytes.substr(from, blank - from));
  std::getline(lines, head.status_line);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t value = line.find_first_not_of(" \t", colon + 1);
    head.headers[name] = value == std::string::npos ? "" : line.substr(value);
  }
  if (head.status_line.ends_with('\r')) head.status_line.pop_back();
  return head;
}

TEST_F(Foundation, HeadIsServedWithoutBody) {
  // Raw bytes, because an HTTP client told "no body" never reads one. One keep-alive connection:
  // HEAD, a pause in which a body wrongly written after the HEAD's headers would arrive, then a
  // GET for the same resource. Every byte between the end of the HEAD's header block and the
  // GET's status line would be a body the HEAD must not have.
  std::string reply = testkit::raw_exchange(
      server_->port(), "HEAD /health/live HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
      std::chrono::milliseconds(5000),
      "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
      std::chrono::milliseconds(300));
  auto head = raw_head_at(reply, 0);
  ASSERT_TRUE(head.has_value()) << reply;
  EXPECT_EQ(head->status_line, "HTTP/1.1 200 OK") << reply;
  std::size_t second = reply.find("HTTP/1.1 ", head->end);
  ASSERT_NE(second, std::string::npos) << "no answer to the GET on the same connection:\n" << reply;
  EXPECT_EQ(second - head->end, 0u)
      << "bytes after the HEAD's headers: " << reply.substr(head->end, second - head->end);

  auto get = raw_head_at(reply, second);
  ASSERT_TRUE(get.has_value()) << reply;
  EXPECT_EQ(get->status_line, "HTTP/1.1 200 OK") << reply;
  std::string get_body = reply.substr(get->end);
  EXPECT_FALSE(get_body.empty()) << reply;
  EXPECT_EQ(get->headers["content-length"], std::to_string(get_body.size())) << reply;
  // HEAD announces the length the GET's body has, and sends none of it.
  EXPECT_EQ(head->headers["content-length"], std::to_string(get_body.size())) << reply;
  EXPECT_EQ(head->headers.count("transfer-encoding"), 0u) << reply;
}

TEST_F(Foundation, OversizedHeadersGet431) {
  std::string big(17 * 1024, 'a');
  auto r = http("GET", server_->url("/health/live"), "", {"X-Big: " + big});
  EXPECT_EQ(r.status, 431);
  // The server keeps serving.
  EXPECT_EQ(http("GET", server_->url("/health/live")).status, 200);
}

TEST_F(Foundation, OversizedBodyGets413) {
  auto r = http("POST", server_->url("/health"), std::string(4096, 'x'));
  EXPECT_EQ(r.status, 413);
  EXPECT_EQ(json_of(r).at("code").as_string(), "payload_too_large");
}

TEST_F(Foundation, MalformedRequestGets400) {
  std::string reply = testkit::raw_exchange(server_->port(), "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << reply;
  EXPECT_NE(reply.find("application/problem+json"), std::string::npos);
  std::string bad_length = testkit::raw_exchange(
      server_->port(), "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n");
  EXPECT_EQ(bad_length.rfind("HTTP/1.1 400", 0), 0u) << bad_length;
  EXPECT_EQ(http("GET", server_->url("/health/live")).status, 200);
}

TEST_F(Foundation, KeepAliveServesSeveralRequestsOnOneConnection) {
  std::string two =
      "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  std::string reply = testkit::raw_exchange(server_->port(), two);
  EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_NE(reply.find("HTTP/1.1 200", 10), std::string::npos) << reply;
  EXPECT_NE(reply.find("uptime_seconds"), std::string::npos);
}

TEST_F(Foundation, MetricsPassPromtool) {
  http("GET", server_->url("/health"));
  auto r = http("GET", server_->url("/metrics"));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(
      r.body.find("hsea_http_requests_total{route=\"/health\",method=\"GET\",status=\"200\"}"),
      std::string::npos);
  EXPECT_NE(r.body.find("hsea_http_request_duration_seconds_bucket"), std::string::npos);
  EXPECT_NE(r.body.find("hsea_db_pool_connections{state=\"idle\"}"), std::string::npos);
  EXPECT_NE(r.body.find("process_resident_memory_bytes"), std::string::npos);
  EXPECT_NE(r.body.find("process_open_fds"), std::string::npos);
  FILE* p = popen("promtool check metrics > /tmp/hsea-promtool.out 2>&1", "w");
  ASSERT_NE(p, nullptr);
  fwrite(r.body.data(), 1, r.body.size(), p);
  int status = pclose(p);
  EXPECT_EQ(status, 0) << "promtool rejected /metrics";
}

TEST_F(Foundation, SurvivesDatabaseConnectionLoss) {
  ASSERT_EQ(http("GET", server_->url("/health")).status, 200);
  testkit::sql(db_->admin_url(),
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 "
               "AND pid <> pg_backend_pid()",
               {db_->name()});
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 4; ++i) {
    auto r = http("GET", server_->url("/health"));
    EXPECT_EQ(r.status, 200) << r.body;
  }
}

TEST_F(Foundation, ConcurrentClientsAreServed) {
  std::vector<std::future<int>> results;
  for (int i = 0; i < 16; ++i) {
    results.push_back(std::async(std::launch::async, [] {
      int ok = 0;
      for (int j = 0; j < 20; ++j) ok += http("GET", server_->url("/health")).status == 200;
      return ok;
    }));
  }
  int total = 0;
  for (auto& f : results) total += f.get();
  EXPECT_EQ(total, 16 * 20);
}

TEST(Lifecycle, VersionCommand) {
  auto r = testkit::run_hsea({"version"}, {});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("hsea 0.", 0), 0u) << r.output;
  EXPECT_NE(r.output.find("commit"), std::string::npos);
}

TEST(Lifecycle, IdleKeepAliveConnectionsAreClosed) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_IDLE_TIMEOUT_SECONDS", "1"}});
  auto start = std::chrono::steady_clock::now();
  std::string reply = testkit::raw_exchange(
      server.port(), "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n", std::chrono::seconds(5));
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(reply.rfind("HTTP/1.1 200", 0), 0u) << reply;
  EXPECT_GE(waited, std::chrono::milliseconds(900));  // kept alive for a while
  EXPECT_LT(waited, std::chrono::milliseconds(3000)) << "idle connection not closed";
}

TEST(Lifecycle, AccessLogIsJsonLinesWithRequestFields) {
  TestDatabase db;
  TestServer server(db);
  http("GET", server.url("/health"), "", {"X-Request-Id: log-check-1"});
  http("GET", server.url("/api/nope"), "", {"X-Request-Id: log-check-2"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the log flushes every second
  int seen = 0;
  std::istringstream lines(server.output());
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] != '{') continue;
    auto entry = boost::json::parse(line).as_object();  // every stdout line is JSON
    EXPECT_TRUE(entry.contains("time") && entry.contains("level") && entry.contains("message"));
    if (entry.contains("request_id") &&
        entry.at("request_id").as_string().starts_with("log-check-")) {
      ++seen;
      EXPECT_EQ(entry.at("message").as_string(), "request");
      EXPECT_TRUE(entry.contains("route") && entry.contains("status") &&
                  entry.contains("duration_ms") && entry.contains("tenant_id"));
      if (entry.at("request_id").as_string() == "log-check-2") {
        EXPECT_EQ(entry.at("status").as_int64(), 404);
        EXPECT_EQ(entry.at("route").as_string(), "unmatched");
      }
    }
  }
  EXPECT_EQ(seen, 2) << server.output();
}

TEST(Lifecycle, ClientAddressFromTheProxyWhenTrusted) {
  TestDatabase db;
  for (bool trusted : {false, true}) {
    TestServer server(db, {{"HSEA_TRUST_FORWARDED_FOR", trusted ? "true" : "false"}});
    http("GET", server.url("/health/live"), "",
         {"X-Request-Id: xff-check", "X-Forwarded-For: 203.0.113.9, 198.51.100.7"});
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    std::string out = server.output();
    std::string expected = trusted ? R"("remote_ip":"198.51.100.7")" : R"("remote_ip":"127.0.0.1")";
    EXPECT_NE(out.find(expected), std::string::npos) << trusted << "\n" << out;
    EXPECT_EQ(out.find("203.0.113.9\""), std::string::npos) << "a forgeable entry was used";
  }
}

TEST(Lifecycle, BadConfigurationExitsWith2NamingTheVariable) {
  auto r = testkit::run_hsea({"serve"}, {{"HSEA_HTTP_PORT", "not-a-port"}});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.output.find("HSEA_HTTP_PORT"), std::string::npos) << r.output;
  auto host = testkit::run_hsea({"serve"}, {{"HSEA_HTTP_HOST", "not-an-address"}});
  EXPECT_EQ(host.exit_code, 2);
  EXPECT_NE(host.output.find("HSEA_HTTP_HOST"), std::string::npos) << host.output;
  auto redis = testkit::run_hsea({"serve"}, {{"HSEA_REDIS_URL", "redis://h:notaport"}});
  EXPECT_EQ(redis.exit_code, 2);
  EXPECT_NE(redis.output.find("HSEA_REDIS_URL"), std::string::npos) << redis.output;
  auto prod = testkit::run_hsea({"serve"}, {{"HSEA_ENV", "production"}});
  EXPECT_EQ(prod.exit_code, 2);
  EXPECT_NE(prod.output.find("HSEA_SECRET_KEY"), std::string::npos) << prod.output;
}

TEST(Lifecycle, ServePrintsConfigurationWithSecretsMasked) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_SECRET_KEY", "super-secret-value-that-is-long-enough-1234"}});
  std::string out = server.output();
  EXPECT_NE(out.find("HSEA_DATABASE_URL="), std::string::npos);
  EXPECT_EQ(out.find("super-secret-value"), std::string::npos);
  auto password = db.app_url().substr(db.app_url().find(':', 14) + 1);
  password = password.substr(0, password.find('@'));
  EXPECT_EQ(out.find(password), std::string::npos) << "database password printed";
}

TEST(Lifecycle, MigrateCommandIsIdempotent) {
  TestDatabase db(false);
  std::map<std::string, std::string> env{{"HSEA_DATABASE_ADMIN_URL", db.admin_url()},
                                         {"HSEA_DATABASE_URL", db.app_url()}};
  auto first = testkit::run_hsea({"migrate"}, env);
  EXPECT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("applied 0001_foundation.sql"), std::string::npos);
  auto second = testkit::run_hsea({"migrate"}, env);
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("up to date"), std::string::npos);
}

TEST(Lifecycle, SigtermLetsInFlightRequestFinishAndExitsZero) {
  TestDatabase db;
  TestServer server(db);
  // A request whose body is still arriving when SIGTERM comes: it is answered, then the
  // server exits 0.
  auto reply = std::async(std::launch::async, [port = server.port()] {
    return testkit::raw_exchange(port,
                                 "GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                                 "\r\nab",
                                 std::chrono::milliseconds(5000), "cde",
                                 std::chrono::milliseconds(800));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto code = std::async(std::launch::async, [&server] { return server.stop(SIGTERM); });
  std::string answer = reply.get();
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  EXPECT_NE(answer.find("Connection: close"), std::string::npos) << answer;
  EXPECT_EQ(code.get(), 0) << server.output();
  // New connections are refused once it has stopped.
  EXPECT_EQ(http("GET", server.url("/health/live"), "", {}, 1000).status, 0);
}

TEST(Lifecycle, SlowClientsCannotPinConnections) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_READ_TIMEOUT_SECONDS", "1"}});
  auto start = std::chrono::steady_clock::now();
  std::string reply = testkit::raw_exchange(server.port(), "GET /health/live HTTP/1.1\r\nHo",
                                            std::chrono::milliseconds(5000));
  auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(reply.empty()) << reply;
  EXPECT_LT(waited, std::chrono::milliseconds(3000)) << "connection not closed by the deadline";
}

TEST(Lifecycle, DatabaseDownGives503WithinDeadline) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_DATABASE_URL", "postgresql://nobody:x@127.0.0.1:1/none"}});
  auto start = std::chrono::steady_clock::now();
  auto r = http("GET", server.url("/health"));
  EXPECT_EQ(r.status, 503);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(http("GET", server.url("/health/live")).status, 200);
}

// The public development secret is only for HSEA_ENV=development set explicitly on a loopback
// address; otherwise a missing HSEA_SECRET_KEY is a configuration error (exit 2).
TEST(Lifecycle, PublicDevelopmentSecretNeedsExplicitDevelopmentOnLoopback) {
  // The child sees only what each case sets, whatever the test's own environment holds.
  unsetenv("HSEA_ENV");
  unsetenv("HSEA_SECRET_KEY");
  const std::map<std::string, std::string> base{
      {"HSEA_HTTP_PORT", "0"}, {"HSEA_DATABASE_URL", "postgresql://nobody:x@127.0.0.1:1/none"}};
  auto with = [&](std::map<std::string, std::string> extra) {
    extra.insert(base.begin(), base.end());
    return extra;
  };
  struct Case {
    std::vector<std::string> args;
    std::map<std::string, std::string> env;
  };
  for (const Case& c : std::vector<Case>{
           {{"serve"}, with({})},
           {{"keys", "rotate"}, with({})},
           {{"serve"}, with({{"HSEA_ENV", "development"}, {"HSEA_HTTP_HOST", "0.0.0.0"}})},
           {{"serve"}, with({{"HSEA_ENV", "development"}, {"HSEA_HTTP_HOST", "::"}})},
           {{"keys", "rotate"}, with({{"HSEA_ENV", "development"}, {"HSEA_HTTP_HOST", "0.0.0.0"}})},
           {{"serve"}, with({{"HSEA_ENV", "test"}})},
       }) {
    SCOPED_TRACE(
        c.args[0] +
        (c.env.contains("HSEA_ENV") ? " HSEA_ENV=" + c.env.at("HSEA_ENV") : " HSEA_ENV unset") +
        (c.env.contains("HSEA_HTTP_HOST") ? " on " + c.env.at("HSEA_HTTP_HOST") : ""));
    auto r = testkit::run_hsea(c.args, c.env);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_NE(r.output.find("configuration error: HSEA_SECRET_KEY"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("public development secret"), std::string::npos) << r.output;
  }
  // Explicit development on loopback may still use it: the configuration is accepted, and the
  // command then fails only on the (absent) database.
  auto dev = testkit::run_hsea({"keys", "rotate"}, with({{"HSEA_ENV", "development"}}));
  EXPECT_EQ(dev.exit_code, 1) << dev.output;
  EXPECT_NE(dev.output.find("public development secret"), std::string::npos) << dev.output;
}

// In production /metrics and /status need the metrics token (a bearer credential, compared in
// constant time); without a configured token they do not exist. Health checks stay public
// everywhere, and in development and test the operations endpoints stay open.
TEST(Lifecycle, MetricsAndStatusNeedTheMetricsTokenInProduction) {
  TestDatabase db;
  const std::string token = "metrics-token-0123456789abcdef";
  {
    TestServer prod(db, {{"HSEA_ENV", "production"}, {"HSEA_METRICS_TOKEN", token}});
    for (const std::string path : {"/metrics", "/status", "/metrics?x=1"}) {
      SCOPED_TRACE(path);
      for (const std::vector<std::string>& headers : std::vector<std::vector<std::string>>{
               {},
               {"Authorization: Bearer " + token + "x"},
               {"Authorization: Bearer " + token.substr(0, token.size() - 1)},
               {"Authorization: Bearer"},
               {"Authorization: Basic " + token},
               {"Authorization: " + token}}) {
        auto r = http("GET", prod.url(path), "", headers);
        EXPECT_EQ(r.status, 401) << (headers.empty() ? "no header" : headers[0]) << ": " << r.body;
        EXPECT_EQ(r.header("content-type"), "application/problem+json");
        EXPECT_EQ(r.header("www-authenticate").rfind("Bearer", 0), 0u);
        EXPECT_EQ(r.body.find("hsea_"), std::string::npos) << r.body;
        EXPECT_EQ(r.body.find("uptime"), std::string::npos) << r.body;
      }
      EXPECT_EQ(http("GET", prod.url(path), "", {"Authorization: Bearer " + token}).status, 200);
      EXPECT_EQ(http("GET", prod.url(path), "", {"authorization: bearer " + token}).status, 200);
    }
    auto metrics = http("GET", prod.url("/metrics"), "", {"Authorization: Bearer " + token});
    EXPECT_NE(metrics.body.find("hsea_http_requests_total"), std::string::npos);
    EXPECT_EQ(http("GET", prod.url("/health/live")).status, 200);
    EXPECT_EQ(http("GET", prod.url("/health")).status, 200);
    EXPECT_EQ(prod.output().find(token), std::string::npos) << "the token was printed";
  }
  {
    TestServer no_token(db, {{"HSEA_ENV", "production"}});
    for (const char* path : {"/metrics", "/status"}) {
      for (const std::vector<std::string>& headers :
           std::vector<std::vector<std::string>>{{}, {"Authorization: Bearer " + token}}) {
        auto r = http("GET", no_token.url(path), "", headers);
        EXPECT_EQ(r.status, 404) << path << ": " << r.body;
        EXPECT_EQ(r.header("content-type"), "application/problem+json");
      }
    }
    EXPECT_EQ(http("GET", no_token.url("/health/live")).status, 200);
    EXPECT_EQ(http("GET", no_token.url("/health")).status, 200);
  }
  TestServer test_env(db, {{"HSEA_METRICS_TOKEN", token}});
  EXPECT_EQ(http("GET", test_env.url("/metrics")).status, 200);
  EXPECT_EQ(http("GET", test_env.url("/status")).status, 200);
}

}  // namespace
}  // namespace hsea

// At the open-file limit the accept loop must back off instead of spinning, and the number of
// connections is capped (HSEA_MAX_CONNECTIONS, by default derived from the limit) so the limit is
// normally never reached. The server runs with a soft limit of 64 open files, as under `prlimit
// --nofile=64`.
namespace hsea {
namespace {

// Lowers this process's soft RLIMIT_NOFILE while a server starts: the child inherits it. The
// test gets its own limit back at once (it needs many descriptors for its connections).
class ChildFileLimit {
 public:
  explicit ChildFileLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit low = saved_;
    low.rlim_cur = std::min(soft, saved_.rlim_max);
    setrlimit(RLIMIT_NOFILE, &low);
  }
  ~ChildFileLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  ChildFileLimit(const ChildFileLimit&) = delete;
  ChildFileLimit& operator=(const ChildFileLimit&) = delete;

 private:
  rlimit saved_{};
};

// User plus system CPU time of a process so far, from /proc/<pid>/stat (fields 14 and 15).
double cpu_seconds(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long long ticks = 0;
  for (int i = 3; fields >> field && i <= 15; ++i) {
    if (i == 14 || i == 15) ticks += std::stoll(field);
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::vector<int> open_idle_connections(int port, int count) {
  std::vector<int> fds;
  for (int i = 0; i < count; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ADD_FAILURE() << "connect " << i << " failed: " << std::strerror(errno);
      if (fd >= 0) close(fd);
      break;
    }
    fds.push_back(fd);
  }
  return fds;
}

int count_lines_with(const std::string& text, std::string_view needle) {
  int n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

void expect_calm_at_the_file_limit(const std::map<std::string, std::string>& env) {
  TestDatabase db;
  std::unique_ptr<TestServer> server;
  {
    ChildFileLimit limit(64);
    server = std::make_unique<TestServer>(db, env);
  }
  ASSERT_EQ(http("GET", server->url("/health/live")).status, 200);
  std::vector<int> extra = open_idle_connections(server->port(), 150);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  double before = cpu_seconds(server->pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  double spent = cpu_seconds(server->pid()) - before;
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // the log flushes every second
  int failures = count_lines_with(server->output(), "\"accept failed\"");
  EXPECT_LT(failures, 50) << "accept failures logged in about 3 s";
  EXPECT_LT(spent, 0.3) << "CPU seconds the server used in 2 s at the limit";
  for (int fd : extra) close(fd);
  auto after = http("GET", server->url("/health/live"), "", {}, 5000);
  EXPECT_EQ(after.status, 200) << "not serving once the connections closed";
}

TEST(FileLimit, DefaultConnectionCapKeepsTheServerBelowTheLimit) {
  expect_calm_at_the_file_limit({});
}

TEST(FileLimit, AcceptBacksOffWhenOutOfFileDescriptors) {
  // A cap far above what the limit allows: accept hits EMFILE and must back off.
  expect_calm_at_the_file_limit({{"HSEA_MAX_CONNECTIONS", "10000"}});
}

}  // namespace
}  // namespace hsea

namespace hsea {
namespace {

TEST(Redis, HealthReportsRedisAndOtherRequestsKeepWorkingWhenItIsDown) {
  TestDatabase db;
  {
    TestServer up(db, {{"HSEA_REDIS_URL", testkit::required_env("HSEA_TEST_REDIS_URL")}});
    testkit::HttpResponse r;
    for (int i = 0; i < 50; ++i) {  // the client connects in the background
      r = http("GET", up.url("/health"));
      if (r.status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json_of(r).at("checks").as_object().at("redis").as_object().at("status").as_string(),
              "up");
  }
  // Nothing listens on port 1: Redis is down for this server. Rate limits fall back to per-node
  // buckets, so the node still serves: degraded, not unavailable.
  TestServer down(db, {{"HSEA_REDIS_URL", "redis://127.0.0.1:1"}});
  auto health = http("GET", down.url("/health"));
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(testkit::str(json_of(health), "status"), "degraded");
  auto checks = json_of(health).at("checks").as_object();
  EXPECT_EQ(checks.at("redis").as_object().at("status").as_string(), "down");
  EXPECT_EQ(checks.at("database").as_object().at("status").as_string(), "up");
  EXPECT_EQ(http("GET", down.url("/health/live")).status, 200);
  EXPECT_EQ(http("GET", down.url("/status")).status, 200);
}

}  // namespace
}  // namespace hsea
