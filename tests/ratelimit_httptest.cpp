// Rate limits through the HTTP API (HSEA-031..035): 429 with the standard headers, buckets per
// tenant, user, API key and address, staff bypass and the exemption list, overrides and their
// resolution order, analytics; two nodes sharing one Redis stay within limit plus burst; Redis
// stopped mid-test fails open to per-node limits (health: degraded) and recovers.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <chrono>
#include <thread>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::sql;
using testkit::str;
using testkit::TestDatabase;
using testkit::TestServer;
using Clock = std::chrono::steady_clock;

HttpResponse get(const TestServer& s, const std::string& path, const std::string& token,
                 std::vector<std::string> headers = {}) {
  headers.push_back(bearer(token));
  return http("GET", s.url(path), "", headers);
}

// Requests until the first 429 (at most `max`); returns how many were admitted first.
int admitted_until_refused(const TestServer& s, const std::string& path, const std::string& token,
                           int max, HttpResponse* refused = nullptr,
                           std::vector<std::string> headers = {}) {
  for (int i = 0; i < max; ++i) {
    HttpResponse r = get(s, path, token, headers);
    if (r.status == 429) {
      if (refused != nullptr) *refused = r;
      return i;
    }
    EXPECT_EQ(r.status, 200) << r.body;
  }
  return max;
}

// Test servers run without rate limits (testkit); these tests turn them on.
std::map<std::string, std::string> limited(std::map<std::string, std::string> env = {}) {
  env["HSEA_RATE_LIMIT_ENABLED"] = "true";
  return env;
}

// The seeded plans carry rates (free: 5 a second, 20 at once); tests of the settings' default
// rate take them out, so the default applies.
void without_plan_rates(const TestDatabase& db) {
  sql(db.admin_url(), "UPDATE plans SET limits = limits - 'requests_per_second' - 'burst'");
}

void make_staff(const TestDatabase& db, const std::string& user_id) {
  sql(db.admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {user_id});
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A private, in-memory Redis the test can stop and start again.
class OwnRedis {
 public:
  OwnRedis() : port_(free_port()) { start(); }
  ~OwnRedis() { stop(); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  void start() {
    pid_ = ::fork();
    if (pid_ == 0) {
      std::string port = std::to_string(port_);
      ::execlp("redis-server", "redis-server", "--port", port.c_str(), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--loglevel", "warning",
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 100; ++i) {  // until it accepts connections
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (up) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "redis-server did not start";
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

// Waits until /health says `status`.
HttpResponse wait_for_health(const TestServer& s, const std::string& status) {
  HttpResponse r;
  for (int i = 0; i < 100; ++i) {
    r = http("GET", s.url("/health"));
    if (str(json_of(r), "status") == status) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ADD_FAILURE() << "health never became " << status << ": " << r.body;
  return r;
}

TEST(RateLimit, RefusalsAre429ProblemsWithHeadersAndOneTenantNeverLimitsAnother) {
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db, limited({{"HSEA_RATE_LIMIT_RPS", "1"}, {"HSEA_RATE_LIMIT_BURST", "5"}}));
  Account a = testkit::sign_up(server, "Hammer A");
  Account b = testkit::sign_up(server, "Quiet B");

  HttpResponse first = get(server, "/api/members", a.access_token);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.header("x-ratelimit-limit"), "5");
  EXPECT_EQ(first.header("x-ratelimit-remaining"), "4");
  EXPECT_FALSE(first.header("x-ratelimit-reset").empty());
  EXPECT_EQ(first.header("ratelimit-policy"), "\"api\";q=5;w=5");
  EXPECT_EQ(first.header("ratelimit").rfind("\"api\";r=4;t=", 0), 0u) << first.header("ratelimit");

  HttpResponse refused;
  auto start = Clock::now();
  int admitted = admitted_until_refused(server, "/api/members", a.access_token, 50, &refused);
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  EXPECT_GE(admitted, 4);                                  // the rest of the burst...
  EXPECT_LE(admitted, 4 + static_cast<int>(seconds) + 1);  // ...and the refill meanwhile
  ASSERT_EQ(refused.status, 429);
  EXPECT_EQ(refused.header("content-type"), "application/problem+json");
  object problem = json_of(refused);
  EXPECT_EQ(str(problem, "code"), "rate_limited");
  EXPECT_EQ(problem.at("status").as_int64(), 429);
  EXPECT_GE(std::stoi(refused.header("retry-after")), 1);
  EXPECT_EQ(refused.header("x-ratelimit-limit"), "5");
  EXPECT_EQ(refused.header("x-ratelimit-remaining"), "0");
  EXPECT_EQ(refused.header("ratelimit-policy"), "\"api\";q=5;w=5");

  // Tenant A's hammering never limits tenant B: B's bucket is full.
  HttpResponse other = get(server, "/api/members", b.access_token);
  EXPECT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(other.header("x-ratelimit-remaining"), "4");
  // Public routes carry no limit.
  EXPECT_TRUE(http("GET", server.url("/health")).header("x-ratelimit-limit").empty());
}

TEST(RateLimit, UsersApiKeysAndAddressesHaveTheirOwnBuckets) {
  TestDatabase db;
  TestServer server(db, limited());
  Account a = testkit::sign_up(server, "Keys A");
  // GET /api/rate-limits/report declares its own rule: 10 at once per user or API key.
  auto key = http("POST", server.url("/api/api-keys"),
                  R"({"name":"reporter","scopes":["tenant:read"]})", {bearer(a.access_token)});
  ASSERT_EQ(key.status, 201) << key.body;
  std::string api_key = str(json_of(key), "key");

  HttpResponse refused;
  EXPECT_EQ(admitted_until_refused(server, "/api/rate-limits/report", a.access_token, 30, &refused),
            10);
  EXPECT_EQ(refused.header("ratelimit-policy"), "\"rate_limits.report\";q=10;w=20");
  // The tenant's API key has a bucket of its own, and so has the rest of the tenant's API.
  HttpResponse by_key = get(server, "/api/rate-limits/report", api_key);
  EXPECT_EQ(by_key.status, 200) << by_key.body;
  EXPECT_EQ(by_key.header("x-ratelimit-remaining"), "9");
  EXPECT_EQ(get(server, "/api/members", a.access_token).status, 200);
  // A member user of the same tenant: own bucket too.
  Account m = testkit::sign_up(server, "Member's own");
  testkit::add_member(db, a.tenant_id, m.user_id, "admin");
  HttpResponse member =
      get(server, "/api/rate-limits/report", m.access_token, {"X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(member.status, 200) << member.body;
  EXPECT_EQ(member.header("x-ratelimit-remaining"), "9");
}

TEST(RateLimit, FailedSignInsCountPerAddressAndIPv6Per64) {
  TestDatabase db;
  TestServer server(
      db, {{"HSEA_LOGIN_MAX_FAILURES_PER_IP", "2"}, {"HSEA_TRUST_FORWARDED_FOR", "true"}});
  auto login_from = [&](const std::string& ip, const std::string& who) {
    return http("POST", server.url("/api/auth/login"),
                R"({"email":")" + who + R"(@example.com","password":"wrong guess 12"})",
                {"X-Forwarded-For: " + ip});
  };
  EXPECT_EQ(login_from("2001:db8:7:1::1", "a").status, 401);
  EXPECT_EQ(login_from("2001:db8:7:1::ffff", "b").status, 401);  // the same /64
  HttpResponse refused = login_from("2001:db8:7:1:abcd::2", "c");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_FALSE(refused.header("retry-after").empty());
  EXPECT_EQ(login_from("2001:db8:7:2::1", "d").status, 401);  // another /64
  EXPECT_EQ(login_from("198.51.100.20", "e").status, 401);    // another address
}

TEST(RateLimit, StaffAndExemptCallersAreNotLimited) {
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db, limited({{"HSEA_RATE_LIMIT_RPS", "1"},
                                 {"HSEA_RATE_LIMIT_BURST", "2"},
                                 {"HSEA_TRUST_FORWARDED_FOR", "true"},
                                 {"HSEA_RATE_LIMIT_EXEMPT", "198.51.100.9, 2001:DB8:9:9::1"}}));
  Account staff = testkit::sign_up(server, "Operators");
  make_staff(db, staff.user_id);
  Account a = testkit::sign_up(server, "Ordinary");
  for (int i = 0; i < 10; ++i) {
    HttpResponse r = get(server, "/api/members", staff.access_token);
    ASSERT_EQ(r.status, 200) << i << r.body;
    EXPECT_TRUE(r.header("x-ratelimit-limit").empty());
  }
  // From an exempt address (an IPv6 entry covers its /64), A is not limited...
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(get(server, "/api/members", a.access_token, {"X-Forwarded-For: 198.51.100.9"}).status,
              200);
    EXPECT_EQ(
        get(server, "/api/members", a.access_token, {"X-Forwarded-For: 2001:db8:9:9::77"}).status,
        200);
  }
  // ...and from elsewhere it is.
  EXPECT_LE(admitted_until_refused(server, "/api/members", a.access_token, 20, nullptr,
                                   {"X-Forwarded-For: 203.0.113.5"}),
            4);
  // Only staff reach the operator API.
  EXPECT_EQ(get(server, "/api/admin/rate-limits/overrides", staff.access_token).status, 200);
  EXPECT_EQ(get(server, "/api/admin/rate-limits/overrides", a.access_token).status, 403);
  EXPECT_EQ(get(server, "/api/admin/rate-limits/report", a.access_token).status, 403);
}

TEST(RateLimit, OperatorsGrantAndRevokeStaffFromTheCommandLine) {
  TestDatabase db;
  TestServer server(db, limited());
  Account a = testkit::sign_up(server, "Operator to be");
  std::map<std::string, std::string> env{{"HSEA_DATABASE_URL", db.app_url()},
                                         {"HSEA_DATABASE_ADMIN_URL", db.admin_url()}};
  auto grant = testkit::run_hsea({"staff", "grant", a.user_id}, env);
  ASSERT_EQ(grant.exit_code, 0) << grant.output;
  EXPECT_NE(grant.output.find("granted"), std::string::npos) << grant.output;
  EXPECT_EQ(get(server, "/api/admin/rate-limits/overrides", a.access_token).status, 200);
  auto revoke = testkit::run_hsea({"staff", "revoke", a.user_id}, env);
  ASSERT_EQ(revoke.exit_code, 0) << revoke.output;
  EXPECT_NE(revoke.output.find("revoked"), std::string::npos) << revoke.output;
  // Other processes' auth caches forget within 5 s.
  std::this_thread::sleep_for(std::chrono::milliseconds(5500));
  EXPECT_EQ(get(server, "/api/admin/rate-limits/overrides", a.access_token).status, 403);
  EXPECT_NE(testkit::run_hsea({"staff", "grant", "not-a-uuid"}, env).exit_code, 0);
}

// The resolution order through the API: the plan's rate replaces the settings' default, an
// override replaces the plan's, and a route's own rule is not the plan's to change.
TEST(RateLimit, PlanRatesApplyPerTenantAndOverridesReplaceThem) {
  TestDatabase db;
  sql(db.admin_url(),
      "UPDATE plans SET limits = limits || '{\"requests_per_second\": 1, \"burst\": 3}' "
      "WHERE id = 'free'");
  TestServer server(db,
                    limited({{"HSEA_RATE_LIMIT_RPS", "1000"}, {"HSEA_RATE_LIMIT_BURST", "1000"}}));
  Account staff = testkit::sign_up(server, "Operators");
  make_staff(db, staff.user_id);
  Account a = testkit::sign_up(server, "Free A");
  Account b = testkit::sign_up(server, "Pro B");
  sql(db.admin_url(), "UPDATE subscriptions SET plan_id = 'pro' WHERE tenant_id = $1",
      {b.tenant_id});

  HttpResponse first = get(server, "/api/members", a.access_token);
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_EQ(first.header("ratelimit-policy"), "\"api\";q=3;w=3");  // the free plan's
  EXPECT_LE(admitted_until_refused(server, "/api/members", a.access_token, 20), 4);
  HttpResponse pro = get(server, "/api/members", b.access_token);
  EXPECT_EQ(pro.header("ratelimit-policy"), "\"api\";q=500;w=5");  // pro: 100 a second, 500
  object limit =
      json_of(get(server, "/api/rate-limits/report", a.access_token)).at("limit").as_object();
  EXPECT_EQ(str(limit, "source"), "plan");
  EXPECT_EQ(limit.at("requests").as_int64(), 1);
  // The report's own rule ignores the plan.
  EXPECT_EQ(get(server, "/api/rate-limits/report", a.access_token).header("ratelimit-policy"),
            "\"rate_limits.report\";q=10;w=20");

  HttpResponse set =
      http("PUT", server.url("/api/admin/rate-limits/overrides/" + a.tenant_id + "/api"),
           R"({"requests":50,"burst":50})",
           {bearer(staff.access_token), "Content-Type: application/json"});
  ASSERT_EQ(set.status, 200) << set.body;
  HttpResponse after = get(server, "/api/members", a.access_token);
  EXPECT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.header("ratelimit-policy"), "\"api\";q=50;w=1");
  limit = json_of(get(server, "/api/rate-limits/report", a.access_token)).at("limit").as_object();
  EXPECT_EQ(str(limit, "source"), "override");
  EXPECT_EQ(get(server, "/api/members", b.access_token).header("ratelimit-policy"),
            "\"api\";q=500;w=5");
}

TEST(RateLimit, OverridesReplaceTheDefaultForOneTenantAndAreAudited) {
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db,
                    limited({{"HSEA_RATE_LIMIT_RPS", "100"}, {"HSEA_RATE_LIMIT_BURST", "100"}}));
  Account staff = testkit::sign_up(server, "Operators");
  make_staff(db, staff.user_id);
  Account a = testkit::sign_up(server, "Enterprise A");
  Account b = testkit::sign_up(server, "Other B");
  auto report_limit = [&](const Account& who) {
    return json_of(get(server, "/api/rate-limits/report", who.access_token))
        .at("limit")
        .as_object();
  };
  EXPECT_EQ(str(report_limit(a), "source"), "default");
  EXPECT_EQ(report_limit(a).at("requests").as_int64(), 100);

  std::string path = "/api/admin/rate-limits/overrides/" + a.tenant_id + "/api";
  auto put = [&](const std::string& p, const std::string& body, const std::string& token) {
    return http("PUT", server.url(p), body, {bearer(token), "Content-Type: application/json"});
  };
  // Only staff; bad bodies and unknown tenants change nothing.
  EXPECT_EQ(put(path, R"({"requests":2})", a.access_token).status, 403);
  EXPECT_EQ(put(path, R"({"requests":0})", staff.access_token).status, 422);
  EXPECT_EQ(put(path, R"({"requests":2,"extra":1})", staff.access_token).status, 422);
  EXPECT_EQ(put("/api/admin/rate-limits/overrides/" + a.tenant_id + "/Bad%20Rule",
                R"({"requests":2})", staff.access_token)
                .status,
            422);
  EXPECT_EQ(put("/api/admin/rate-limits/overrides/0190f5a0-0000-7000-8000-000000000000/api",
                R"({"requests":2})", staff.access_token)
                .status,
            404);
  EXPECT_EQ(sql(db.admin_url(), "SELECT count(*) FROM rate_limit_overrides")[0][0], "0");

  HttpResponse set =
      put(path, R"({"requests":2,"period_seconds":60,"note":"contract 42"})", staff.access_token);
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(json_of(set).at("requests").as_int64(), 2);
  object limit = report_limit(a);
  EXPECT_EQ(str(limit, "source"), "override");
  EXPECT_EQ(limit.at("requests").as_int64(), 2);
  EXPECT_EQ(limit.at("period_seconds").as_int64(), 60);
  EXPECT_EQ(str(report_limit(b), "source"), "default");  // B keeps the default

  HttpResponse refused;
  EXPECT_EQ(admitted_until_refused(server, "/api/members", a.access_token, 10, &refused), 2);
  EXPECT_EQ(refused.header("x-ratelimit-limit"), "2");
  EXPECT_GE(std::stoi(refused.header("retry-after")), 25);  // one more per 30 s
  EXPECT_EQ(get(server, "/api/members", b.access_token).status, 200);

  auto listed =
      json_of(get(server, "/api/admin/rate-limits/overrides/" + a.tenant_id, staff.access_token));
  ASSERT_EQ(listed.at("data").as_array().size(), 1u);
  EXPECT_EQ(
      json_of(get(server, "/api/admin/rate-limits/overrides/" + b.tenant_id, staff.access_token))
          .at("data")
          .as_array()
          .size(),
      0u);
  // Audited in the tenant's own log, by the staff user.
  auto audit = sql(db.admin_url(),
                   "SELECT actor_id::text FROM audit_logs WHERE tenant_id = $1 "
                   "AND action = 'rate_limit.override_set'",
                   {a.tenant_id});
  ASSERT_EQ(audit.size(), 1u);
  EXPECT_EQ(audit[0][0], staff.user_id);

  HttpResponse removed = http("DELETE", server.url(path), "", {bearer(staff.access_token)});
  EXPECT_EQ(removed.status, 204) << removed.body;
  EXPECT_EQ(http("DELETE", server.url(path), "", {bearer(staff.access_token)}).status, 404);
  EXPECT_EQ(str(report_limit(a), "source"), "default");
}

TEST(RateLimit, LimitedRequestsAreCountedReportedAndAlerted) {
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db, limited({{"HSEA_RATE_LIMIT_RPS", "1"},
                                 {"HSEA_RATE_LIMIT_BURST", "3"},
                                 {"HSEA_RATE_LIMIT_ALERT_THRESHOLD", "2"},
                                 {"HSEA_RATE_LIMIT_FLUSH_SECONDS", "3600"}}));
  Account staff = testkit::sign_up(server, "Operators");
  make_staff(db, staff.user_id);
  Account a = testkit::sign_up(server, "Limited A");
  Account b = testkit::sign_up(server, "Calm B");
  int refused = 0;
  for (int i = 0; i < 10; ++i) refused += get(server, "/api/members", a.access_token).status == 429;
  ASSERT_GE(refused, 5);
  get(server, "/api/members", b.access_token);
  // Each I/O thread's counts are merged every 2 s; the report then writes what is pending.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  object report = json_of(get(server, "/api/rate-limits/report", a.access_token));
  EXPECT_EQ(report.at("limited").as_int64(), refused);
  ASSERT_FALSE(report.at("data").as_array().empty());
  object row = report.at("data").as_array()[0].as_object();
  EXPECT_EQ(str(row, "rule"), "api");
  EXPECT_EQ(str(row, "key"), "tenant");
  // B sees only its own counts.
  EXPECT_EQ(
      json_of(get(server, "/api/rate-limits/report", b.access_token)).at("limited").as_int64(), 0);
  // The operator sees every tenant.
  object platform = json_of(get(server, "/api/admin/rate-limits/report", staff.access_token));
  bool found = false;
  for (const auto& r : platform.at("data").as_array()) {
    if (str(r.as_object(), "tenant_id") == a.tenant_id && str(r.as_object(), "rule") == "api") {
      found = true;
      EXPECT_EQ(r.as_object().at("limited").as_int64(), refused);
    }
  }
  EXPECT_TRUE(found) << boost::json::serialize(platform);
  // /metrics counts per tenant, rule and key kind.
  std::string metrics = http("GET", server.url("/metrics")).body;
  EXPECT_NE(metrics.find("hsea_rate_limited_total{tenant=\"" + a.tenant_id +
                         "\",rule=\"api\",key=\"tenant\"} " + std::to_string(refused)),
            std::string::npos)
      << metrics;
  // Above the threshold: an alert event in A's outbox (and a log line), none for B.
  auto events =
      sql(db.admin_url(), "SELECT tenant_id::text FROM events WHERE type = 'rate_limit.exceeded'");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0][0], a.tenant_id);
  EXPECT_NE(server.output().find("limited above the alert threshold"), std::string::npos);
  // And a mail to the operator: one platform message for the one staff member.
  auto alert_mails = [&] {
    return sql(db.admin_url(),
               "SELECT count(*) FROM mail_messages WHERE template = 'rate_limit_alert' "
               "AND tenant_id IS NULL")[0][0];
  };
  for (int i = 0; i < 200 && alert_mails() != "1"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(alert_mails(), "1");
  // Limited again within the hour: another event, but no second mail.
  for (int i = 0; i < 10; ++i) get(server, "/api/members", a.access_token);
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  get(server, "/api/rate-limits/report", a.access_token);
  EXPECT_EQ(
      sql(db.admin_url(), "SELECT count(*) FROM events WHERE type = 'rate_limit.exceeded'")[0][0],
      "2");
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(alert_mails(), "1");
  EXPECT_EQ(sql(db.admin_url(),
                "SELECT count(*) FROM jobs WHERE kind = 'ratelimit.alert' "
                "AND status <> 'succeeded'")[0][0],
            "0");
}

// The detector's findings reach the tenant's own report, and no other tenant's: A and B make a
// request each, idle through the detector's warm-up (five flushes a second apart), then A
// bursts far above its baseline.
TEST(RateLimit, TheTenantReportListsItsOwnAnomaliesOnly) {
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db, limited({{"HSEA_RATE_LIMIT_RPS", "100000"},
                                 {"HSEA_RATE_LIMIT_BURST", "100000"},
                                 {"HSEA_RATE_LIMIT_FLUSH_SECONDS", "1"}}));
  Account a = testkit::sign_up(server, "Bursty A");
  Account b = testkit::sign_up(server, "Calm B");
  ASSERT_EQ(get(server, "/api/members", a.access_token).status, 200);
  ASSERT_EQ(get(server, "/api/members", b.access_token).status, 200);
  std::this_thread::sleep_for(std::chrono::seconds(9));
  auto anomalies = [&](const Account& who) {
    return json_of(get(server, "/api/rate-limits/report?hours=1", who.access_token))
        .at("anomalies")
        .as_array();
  };
  EXPECT_TRUE(anomalies(a).empty());
  for (int i = 0; i < 300; ++i) ASSERT_EQ(get(server, "/api/members", a.access_token).status, 200);
  boost::json::array found;
  for (int i = 0; i < 8 && found.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    found = anomalies(a);
  }
  ASSERT_FALSE(found.empty()) << server.output();
  object first = found[0].as_object();
  EXPECT_GE(first.at("rate_per_second").to_number<double>(), 10.0);
  EXPECT_LT(first.at("baseline_per_second").to_number<double>(),
            first.at("rate_per_second").to_number<double>());
  EXPECT_EQ(str(first, "at").size(), 20u) << str(first, "at");  // 2026-01-02T03:04:05Z
  EXPECT_FALSE(first.contains("tenant_id"));
  EXPECT_TRUE(anomalies(b).empty());
  // The operator's report names the tenant.
  Account staff = testkit::sign_up(server, "Operators");
  make_staff(db, staff.user_id);
  object platform = json_of(get(server, "/api/admin/rate-limits/report", staff.access_token));
  bool named = false;
  for (const auto& x : platform.at("anomalies").as_array()) {
    named = named || str(x.as_object(), "tenant_id") == a.tenant_id;
    EXPECT_NE(str(x.as_object(), "tenant_id"), b.tenant_id);
  }
  EXPECT_TRUE(named);
}

// A client hammering two nodes (two threads each) with one token for `length`: what was
// admitted, refused or otherwise answered, and the window from the first admitted request's
// sending to the last one's answer.
struct Hammered {
  int allowed = 0, refused = 0, other = 0;
  double window_seconds = 0;
};
Hammered hammer_both(const TestServer& one, const TestServer& two, const std::string& token,
                     std::chrono::seconds length) {
  std::atomic<int> allowed{0}, refused{0}, other{0};
  std::atomic<bool> stop{false};
  std::atomic<long long> first_ns{0}, last_ns{0};
  auto now_ns = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
  };
  auto hammer = [&](const TestServer* s) {
    while (!stop) {
      long long sent = now_ns();
      HttpResponse r = get(*s, "/api/members", token);
      if (r.status == 200) {
        long long expected = 0;
        first_ns.compare_exchange_strong(expected, sent);
        ++allowed;
        last_ns = std::max<long long>(last_ns.load(), now_ns());
      } else if (r.status == 429) {
        ++refused;
      } else {
        ++other;
      }
    }
  };
  std::vector<std::thread> clients;
  for (const TestServer* s : {&one, &two, &one, &two}) clients.emplace_back(hammer, s);
  std::this_thread::sleep_for(length);
  stop = true;
  for (auto& t : clients) t.join();
  return {allowed.load(), refused.load(), other.load(),
          static_cast<double>(last_ns - first_ns) / 1e9};
}

// Two nodes share one Redis: a client hammering both gets limit + burst over the window, not
// twice that. The sign-in throttle holds across the nodes too.
TEST(RateLimit, TwoNodesSharingRedisAdmitRateTimesWindowPlusBurst) {
  TestDatabase db;
  without_plan_rates(db);
  std::map<std::string, std::string> env{
      {"HSEA_RATE_LIMIT_ENABLED", "true"},
      {"HSEA_REDIS_URL", testkit::required_env("HSEA_TEST_REDIS_URL")},
      {"HSEA_RATE_LIMIT_RPS", "50"},
      {"HSEA_RATE_LIMIT_BURST", "50"},
      {"HSEA_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"}};
  TestServer one(db, env);
  TestServer two(db, env);
  wait_for_health(one, "ok");
  wait_for_health(two, "ok");
  Account a = testkit::sign_up(one, "Two nodes");

  Hammered h = hammer_both(one, two, a.access_token, std::chrono::seconds(4));
  int allowed = h.allowed, refused = h.refused;
  EXPECT_EQ(h.other, 0);
  ASSERT_GT(refused, allowed) << "the client did not hammer hard enough to prove anything";
  double window = h.window_seconds;
  double bound = 50 + 50 * window;  // burst + rate x window
  EXPECT_LE(allowed, bound * 1.01 + 1) << "window " << window << " s";
  EXPECT_GE(allowed, bound * 0.99 - 1) << "window " << window << " s";
  std::cout << "two nodes: " << allowed << " admitted, " << refused << " refused in " << window
            << " s (bound " << bound << ")\n";

  // The sign-in throttle: failures on both nodes count against one budget.
  auto login = [&](const TestServer& s) {
    return http("POST", s.url("/api/auth/login"),
                R"({"email":")" + a.email + R"(","password":"wrong password 1"})");
  };
  EXPECT_EQ(login(one).status, 401);
  EXPECT_EQ(login(two).status, 401);
  EXPECT_EQ(login(one).status, 401);
  EXPECT_EQ(login(two).status, 429);
}

// A counter's value in /metrics (0 when absent).
long long metric(const TestServer& s, const std::string& series) {
  std::string body = http("GET", s.url("/metrics")).body;
  std::size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stoll(body.substr(at + series.size() + 2));
}

// The same with leases: at 20 a second and 800 at once, each I/O thread may take up to 2 tokens
// per round trip (lease_max), so the nodes admit part of the burst from leases; the count still
// stays within limit plus burst (every admitted request was paid for in Redis).
TEST(RateLimit, TwoNodesWithLeasesStayWithinRateTimesWindowPlusBurst) {
  TestDatabase db;
  without_plan_rates(db);
  std::map<std::string, std::string> env{
      {"HSEA_RATE_LIMIT_ENABLED", "true"},
      {"HSEA_REDIS_URL", testkit::required_env("HSEA_TEST_REDIS_URL")},
      {"HSEA_RATE_LIMIT_RPS", "20"},
      {"HSEA_RATE_LIMIT_BURST", "800"}};
  TestServer one(db, env);
  TestServer two(db, env);
  wait_for_health(one, "ok");
  wait_for_health(two, "ok");
  Account a = testkit::sign_up(one, "Two nodes, leases");

  Hammered h = hammer_both(one, two, a.access_token, std::chrono::seconds(6));
  int allowed = h.allowed, refused = h.refused;
  EXPECT_EQ(h.other, 0);
  // Refusals throughout the window after the burst: the bucket was kept empty (a loaded machine
  // sends fewer requests; half as many refused as admitted still proves it).
  ASSERT_GT(refused, allowed / 2) << "the client did not hammer hard enough to prove anything";
  double window = h.window_seconds;
  double bound = 800 + 20 * window;  // burst + rate x window
  EXPECT_LE(allowed, bound * 1.01 + 1) << "window " << window << " s";
  EXPECT_GE(allowed, bound * 0.99 - 1) << "window " << window << " s";
  long long leased_one = metric(one, "hsea_rate_limit_lease_admits_total");
  long long leased_two = metric(two, "hsea_rate_limit_lease_admits_total");
  EXPECT_GT(leased_one, 0);
  EXPECT_GT(leased_two, 0);
  std::cout << "two nodes with leases: " << allowed << " admitted (" << leased_one + leased_two
            << " from leases), " << refused << " refused in " << window << " s (bound " << bound
            << ")\n";
}

// One I/O thread, a bucket large enough for leases (1 000 at once: up to 2 tokens a lease):
// X-RateLimit-Remaining counts down by one per request, as without leases, though Redis sees
// fewer checks than requests. Redis stopped: what a lease holds is spent, then the node decides
// alone (a fresh bucket of its own, the burst again), /health says degraded.
TEST(RateLimit, LeasedHeadersStayTruthfulAndRedisStoppedMidLeaseFallsBackPerNode) {
  OwnRedis redis;
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db, limited({{"HSEA_REDIS_URL", redis.url()},
                                 {"HSEA_REDIS_TIMEOUT_MS", "300"},
                                 {"HSEA_THREADS", "1"},
                                 {"HSEA_RATE_LIMIT_RPS", "1"},
                                 {"HSEA_RATE_LIMIT_BURST", "1000"}}));
  wait_for_health(server, "ok");
  Account a = testkit::sign_up(server, "Leased headers");
  long long checks_before = metric(server, "hsea_rate_limit_checks_total{backend=\"redis\"}");
  long long first = 0;
  for (int i = 0; i < 40; ++i) {
    HttpResponse r = get(server, "/api/members", a.access_token);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.header("x-ratelimit-limit"), "1000");
    long long remaining = std::stoll(r.header("x-ratelimit-remaining"));
    if (i == 0) first = remaining;
    // One a second refills: at most a token or two over these requests.
    EXPECT_LE(remaining, first - i + 2) << i;
    EXPECT_GE(remaining, first - i) << i;
    EXPECT_EQ(r.header("ratelimit").rfind("\"api\";r=" + std::to_string(remaining) + ";t=", 0), 0u);
  }
  EXPECT_GE(first, 998);
  long long checks =
      metric(server, "hsea_rate_limit_checks_total{backend=\"redis\"}") - checks_before;
  EXPECT_LT(checks, 40);
  EXPECT_GT(metric(server, "hsea_rate_limit_lease_admits_total"), 0);

  redis.stop();
  HttpResponse health = wait_for_health(server, "degraded");
  EXPECT_EQ(health.status, 200);
  // The node's own bucket, fresh (the burst again) and counting down: limited, not unlimited.
  // (A request may still be admitted from the lease taken before: its remaining is Redis'.)
  long long local_before = metric(server, "hsea_rate_limit_checks_total{backend=\"local\"}");
  std::vector<long long> local;
  for (int i = 0; i < 10; ++i) {
    HttpResponse r = get(server, "/api/members", a.access_token);
    ASSERT_EQ(r.status, 200) << r.body;
    long long remaining = std::stoll(r.header("x-ratelimit-remaining"));
    if (remaining > first - 40) local.push_back(remaining);
  }
  ASSERT_GE(local.size(), 8u);
  EXPECT_EQ(local.front(), 999);
  for (std::size_t i = 1; i < local.size(); ++i) EXPECT_EQ(local[i], local[i - 1] - 1) << i;
  EXPECT_EQ(metric(server, "hsea_rate_limit_degraded"), 1);
  EXPECT_GE(metric(server, "hsea_rate_limit_checks_total{backend=\"local\"}") - local_before, 8);

  redis.start();
  wait_for_health(server, "ok");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  HttpResponse back = get(server, "/api/members", a.access_token);
  EXPECT_EQ(back.status, 200);
  EXPECT_GE(std::stoll(back.header("x-ratelimit-remaining")), 998);  // Redis' bucket, fresh
  EXPECT_EQ(metric(server, "hsea_rate_limit_degraded"), 0);
}

TEST(RateLimit, RedisStoppedFailsOpenToPerNodeLimitsAndRecovers) {
  OwnRedis redis;
  TestDatabase db;
  without_plan_rates(db);
  TestServer server(db, limited({{"HSEA_REDIS_URL", redis.url()},
                                 {"HSEA_REDIS_TIMEOUT_MS", "300"},
                                 {"HSEA_RATE_LIMIT_RPS", "1"},
                                 {"HSEA_RATE_LIMIT_BURST", "3"}}));
  wait_for_health(server, "ok");
  Account a = testkit::sign_up(server, "Redis outage");
  EXPECT_LE(admitted_until_refused(server, "/api/members", a.access_token, 20), 4);

  redis.stop();
  HttpResponse health = wait_for_health(server, "degraded");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(str(json_of(health).at("checks").as_object().at("redis").as_object(), "status"),
            "down");
  // Still limited, now by this node's own buckets (fresh: the burst again), not unlimited.
  int admitted = admitted_until_refused(server, "/api/members", a.access_token, 20);
  EXPECT_GE(admitted, 3);
  EXPECT_LE(admitted, 5);
  std::string metrics = http("GET", server.url("/metrics")).body;
  EXPECT_NE(metrics.find("hsea_rate_limit_degraded 1"), std::string::npos);

  redis.start();
  wait_for_health(server, "ok");
  // Back on Redis (empty after the restart: a full bucket), and no longer degraded.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  admitted = admitted_until_refused(server, "/api/members", a.access_token, 20);
  EXPECT_GE(admitted, 3);
  EXPECT_LE(admitted, 5);
  metrics = http("GET", server.url("/metrics")).body;
  EXPECT_NE(metrics.find("hsea_rate_limit_degraded 0"), std::string::npos);
}

}  // namespace
}  // namespace hsea
