// Usage metering and quotas (HSEA-026, HSEA-027) through the real server: api_calls counted per
// request and kept apart per tenant, product events deduplicated, batched and windowed, daily and
// monthly rollups, the soft warning (one mail) and the hard 429 with its headers, and a Redis
// restart that loses no usage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <ctime>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "testkit/smtp_sink.hpp"
#include "testkit/testkit.hpp"

extern char** environ;

namespace hsea {
namespace {

using namespace std::chrono_literals;
using boost::json::array;
using boost::json::object;
using testkit::http;
using testkit::json_of;
using testkit::sql;

using testkit::call;

std::string iso(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string event(const std::string& meter, long quantity, const std::string& key,
                  const std::string& timestamp = "") {
  object o{{"meter", meter}, {"quantity", quantity}};
  if (!key.empty()) o["idempotency_key"] = key;
  if (!timestamp.empty()) o["timestamp"] = timestamp;
  return boost::json::serialize(o);
}

// The summary's entry for `meter` (empty when absent).
object meter_of(const testkit::TestServer& s, const std::string& token, const std::string& meter) {
  auto r = call(s, "GET", "/api/usage/summary", token);
  EXPECT_EQ(r.status, 200) << r.body;
  object body = json_of(r);
  for (const auto& m : body["meters"].as_array()) {
    if (m.as_object().at("meter").as_string() == meter) return m.as_object();
  }
  return {};
}

long used_of(const testkit::TestServer& s, const std::string& token, const std::string& meter) {
  object m = meter_of(s, token, meter);
  return m.contains("used") ? static_cast<long>(m["used"].as_int64()) : -1;
}

using testkit::eventually;

long db_api_calls(const testkit::TestDatabase& db, const std::string& tenant) {
  return std::stol(sql(db.admin_url(),
                       "SELECT COALESCE(sum(quantity), 0) FROM usage_events "
                       "WHERE tenant_id = $1 AND meter = 'api_calls'",
                       {tenant})[0][0]);
}

// The free plan's api_calls limit (plans.limits; tenants start on free). HSEA_QUOTA_API_CALLS
// is set alike: it applies until a thread has read the tenant's entitlements.
void set_free_plan_api_calls(const testkit::TestDatabase& db, long n) {
  sql(db.admin_url(),
      "UPDATE plans SET limits = jsonb_set(limits, '{api_calls}', to_jsonb($1::bigint)) "
      "WHERE id = 'free'",
      {std::to_string(n)});
}

TEST(Metering, QuotaWarnsOnceThenRefusesAndNeverCountsAnotherTenantsUsage) {
  testkit::TestDatabase db;
  set_free_plan_api_calls(db, 10);
  testkit::SmtpSink sink;
  // One I/O thread: every request sees the same in-process count, so the limits are exact.
  testkit::TestServer s(db, {{"HSEA_THREADS", "1"},
                             {"HSEA_QUOTA_API_CALLS", "10"},
                             {"HSEA_QUOTA_SOFT_PERCENT", "50"},
                             {"HSEA_METERING_FLUSH_SECONDS", "1"},
                             {"HSEA_SMTP_URL", sink.url()},
                             {"HSEA_PUBLIC_URL", "http://app.hsea.test"}});
  auto a = testkit::sign_up(s, "Quota A");
  auto b = testkit::sign_up(s, "Quota B");
  sink.wait_for(a.email, 2);

  for (int i = 1; i <= 10; ++i) {
    auto r = call(s, "GET", "/api/tenant", a.access_token);
    ASSERT_EQ(r.status, 200) << i << r.body;
    EXPECT_EQ(r.header("x-quota-limit"), "10");
    EXPECT_EQ(r.header("x-quota-remaining"), std::to_string(10 - i));
    long reset = std::stol(r.header("x-quota-reset"));
    EXPECT_GT(reset, 0);
    EXPECT_LE(reset, 31L * 86400);
    EXPECT_EQ(r.header("x-quota-warning").empty(), i < 5) << i;
    if (i == 5) std::this_thread::sleep_for(2500ms);  // a flush: the warning is recorded
  }
  auto refused = call(s, "GET", "/api/tenant", a.access_token);
  ASSERT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.header("content-type"), "application/problem+json");
  EXPECT_EQ(testkit::str(json_of(refused), "code"), "quota_exceeded");
  EXPECT_EQ(refused.header("x-quota-remaining"), "0");
  EXPECT_EQ(refused.header("x-quota-limit"), "10");
  EXPECT_FALSE(refused.header("retry-after").empty());
  // The usage routes stay open: a tenant past its quota can still see it, load the web app
  // (which starts from /api/me), and reach its invoices and plan to pay or upgrade.
  EXPECT_EQ(call(s, "GET", "/api/usage/summary", a.access_token).status, 200);
  EXPECT_EQ(call(s, "GET", "/api/me", a.access_token).status, 200);
  EXPECT_EQ(call(s, "GET", "/api/subscriptions/current", a.access_token).status, 200);
  EXPECT_NE(call(s, "GET", "/api/invoices", a.access_token).status, 429);
  EXPECT_EQ(call(s, "GET", "/api/v1/plans", a.access_token).status, 200);
  EXPECT_EQ(call(s, "GET", "/api/me/sessions", a.access_token).status, 200);
  EXPECT_NE(call(s, "POST", "/api/billing/portal-session", a.access_token, "{}").status, 429);
  // Routes that only start like them are metered as usual.
  EXPECT_EQ(call(s, "GET", "/api/members", a.access_token).status, 429);

  // Tenant B starts from nothing.
  auto rb = call(s, "GET", "/api/tenant", b.access_token);
  ASSERT_EQ(rb.status, 200) << rb.body;
  EXPECT_EQ(rb.header("x-quota-remaining"), "9");
  EXPECT_TRUE(rb.header("x-quota-warning").empty());

  // Written to the database after a flush; the refused call is not usage.
  ASSERT_TRUE(eventually([&] { return db_api_calls(db, a.tenant_id) == 10; }))
      << db_api_calls(db, a.tenant_id);
  EXPECT_TRUE(eventually([&] { return db_api_calls(db, b.tenant_id) == 1; }));
  object ma = meter_of(s, a.access_token, "api_calls");
  EXPECT_EQ(ma["used"].as_int64(), 10);
  EXPECT_EQ(ma["state"].as_string(), "exceeded");
  EXPECT_EQ(ma["remaining"].as_int64(), 0);
  object mb = meter_of(s, b.access_token, "api_calls");
  EXPECT_EQ(mb["used"].as_int64(), 1);
  EXPECT_EQ(mb["state"].as_string(), "ok");

  // One warning mail for A's owner in this period, however many flushes saw A past 50%.
  std::this_thread::sleep_for(3s);
  auto mails = sink.wait_for(a.email, 3);
  std::vector<object> warnings;
  for (auto& m : mails) {
    if (m.at("subject").as_string().find("has used") != std::string::npos) warnings.push_back(m);
  }
  ASSERT_EQ(warnings.size(), 1u) << sink.log();
  EXPECT_NE(warnings[0].at("subject").as_string().find("api_calls"), std::string::npos);
  // The mail's link opens the usage page of the web app, not its front page.
  EXPECT_NE(testkit::str(warnings[0], "text").find("http://app.hsea.test/account/usage"),
            std::string::npos)
      << testkit::str(warnings[0], "text");
  EXPECT_NE(testkit::str(warnings[0], "html").find("href=\"http://app.hsea.test/account/usage\""),
            std::string::npos);
  EXPECT_EQ(sql(db.admin_url(), "SELECT count(*) FROM usage_warnings WHERE tenant_id = $1",
                {a.tenant_id})[0][0],
            "1");
  for (auto& m : sink.accepted_for(b.email)) {
    EXPECT_EQ(m.at("subject").as_string().find("has used"), std::string::npos);
  }
  // The event is the tenant's, for webhooks too (A's own API calls are refused now).
  for (const auto& [tenant, expected] :
       {std::pair{a.tenant_id, "1"}, std::pair{b.tenant_id, "0"}}) {
    EXPECT_EQ(
        sql(db.admin_url(),
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND type = 'usage.limit_warning'",
            {tenant})[0][0],
        expected);
  }
}

TEST(Metering, EnterpriseOverrideReplacesThePlanQuota) {
  testkit::TestDatabase db;
  set_free_plan_api_calls(db, 3);
  testkit::TestServer s(db, {{"HSEA_THREADS", "1"}, {"HSEA_QUOTA_API_CALLS", "3"}});
  auto a = testkit::sign_up(s, "Override A");
  auto b = testkit::sign_up(s, "Override B");
  auto r = testkit::run_hsea(
      {"usage", "quota", "--tenant", a.tenant_id, "--meter", "api_calls", "--quota", "unlimited"},
      {{"HSEA_DATABASE_ADMIN_URL", db.admin_url()}, {"HSEA_DATABASE_URL", db.app_url()}});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // A tenant's first call on a thread goes by the plan until the next flush reads its override.
  EXPECT_EQ(call(s, "GET", "/api/tenant", a.access_token).header("x-quota-limit"), "3");
  EXPECT_EQ(call(s, "GET", "/api/tenant", b.access_token).status, 200);
  std::this_thread::sleep_for(2500ms);
  for (int i = 0; i < 6; ++i) {
    auto ra = call(s, "GET", "/api/tenant", a.access_token);
    EXPECT_EQ(ra.status, 200) << i << ra.body;
    EXPECT_TRUE(ra.header("x-quota-limit").empty());
  }
  for (int i = 0; i < 2; ++i) EXPECT_EQ(call(s, "GET", "/api/tenant", b.access_token).status, 200);
  EXPECT_EQ(call(s, "GET", "/api/tenant", b.access_token).status, 429);
  EXPECT_TRUE(meter_of(s, a.access_token, "api_calls")["limit"].is_null());
  EXPECT_EQ(meter_of(s, b.access_token, "api_calls")["limit"].as_int64(), 3);
}

TEST(Metering, ProductEventsAreDeduplicatedBatchedAndWindowed) {
  testkit::TestDatabase db;
  testkit::TestServer s(db, {{"HSEA_METERING_LATE_SECONDS", "3600"}});
  auto a = testkit::sign_up(s, "Events A");
  ASSERT_FALSE(a.tenant_id.empty()) << s.output();
  auto b = testkit::sign_up(s, "Events B");
  auto now = std::chrono::system_clock::now();

  auto r = call(s, "POST", "/api/usage/events", a.access_token, event("emails", 5, "k-1"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 1);
  // The same key again, even with another quantity and time: a duplicate.
  r = call(s, "POST", "/api/usage/events", a.access_token,
           event("emails", 7, "k-1", iso(now - 10min)));
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 0);
  EXPECT_EQ(json_of(r)["duplicates"].as_int64(), 1);
  // Another tenant's keys are its own.
  r = call(s, "POST", "/api/usage/events", b.access_token, event("emails", 2, "k-1"));
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 1);

  // A batch of 1000, then the same batch again.
  array batch;
  for (int i = 0; i < 1000; ++i) {
    batch.push_back(boost::json::parse(event("tokens", 1, "batch-" + std::to_string(i))));
  }
  std::string body = boost::json::serialize(object{{"events", batch}});
  r = call(s, "POST", "/api/usage/events", a.access_token, body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 1000);
  r = call(s, "POST", "/api/usage/events", a.access_token, body);
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 0);
  EXPECT_EQ(json_of(r)["duplicates"].as_int64(), 1000);
  // 1001 is refused whole.
  batch.push_back(boost::json::parse(event("tokens", 1, "batch-1000")));
  r = call(s, "POST", "/api/usage/events", a.access_token,
           boost::json::serialize(object{{"events", batch}}));
  EXPECT_EQ(r.status, 422) << r.body;
  // A key repeated inside a batch counts once.
  r = call(
      s, "POST", "/api/usage/events", a.access_token,
      R"({"events":[)" + event("emails", 1, "twice") + "," + event("emails", 1, "twice") + "]}");
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 1);
  EXPECT_EQ(json_of(r)["duplicates"].as_int64(), 1);

  // Late events: inside the window accepted, outside refused naming the field; a batch with
  // one bad event records nothing.
  r = call(s, "POST", "/api/usage/events", a.access_token,
           event("emails", 10, "late-ok", iso(now - 50min)));
  EXPECT_EQ(json_of(r)["accepted"].as_int64(), 1) << r.body;
  r = call(s, "POST", "/api/usage/events", a.access_token,
           R"({"events":[)" + event("emails", 100, "fine") + "," +
               event("emails", 100, "too-late", iso(now - 2h)) + "]}");
  ASSERT_EQ(r.status, 422) << r.body;
  EXPECT_NE(r.body.find("/events/1/timestamp"), std::string::npos) << r.body;
  r = call(s, "POST", "/api/usage/events", a.access_token,
           event("emails", 1, "future", iso(now + 1h)));
  EXPECT_EQ(r.status, 422) << r.body;
  // Platform meters and bad names are not the product's to record.
  EXPECT_EQ(call(s, "POST", "/api/usage/events", a.access_token, event("api_calls", 1, "")).status,
            422);
  EXPECT_EQ(call(s, "POST", "/api/usage/events", a.access_token, event("Bad Meter", 1, "")).status,
            422);
  EXPECT_EQ(call(s, "POST", "/api/usage/events", a.access_token, event("emails", -1, "")).status,
            422);

  EXPECT_EQ(used_of(s, a.access_token, "emails"), 5 + 1 + 10);
  EXPECT_EQ(used_of(s, a.access_token, "tokens"), 1000);
  EXPECT_EQ(used_of(s, b.access_token, "emails"), 2);
  EXPECT_EQ(used_of(s, b.access_token, "tokens"), -1);  // B never saw A's meter

  // An API key needs usage:write (or write) to record, usage:read to read.
  auto key = call(s, "POST", "/api/api-keys", a.access_token,
                  R"({"name":"reader","scopes":["usage:read"]})");
  ASSERT_EQ(key.status, 201) << key.body;
  std::string reader = testkit::str(json_of(key), "key");
  EXPECT_EQ(call(s, "POST", "/api/usage/events", reader, event("emails", 1, "")).status, 403);
  EXPECT_EQ(call(s, "GET", "/api/usage/summary", reader).status, 200);
  key = call(s, "POST", "/api/api-keys", a.access_token,
             R"({"name":"writer","scopes":["usage:write"]})");
  std::string writer = testkit::str(json_of(key), "key");
  EXPECT_EQ(call(s, "POST", "/api/usage/events", writer, event("emails", 1, "w")).status, 200);
}

TEST(Metering, RollupsByDayAndMonthShowOnlyTheTenantsOwnUsage) {
  testkit::TestDatabase db;
  testkit::TestServer s(
      db, {{"HSEA_METERING_ROLLUP_SECONDS", "1"}, {"HSEA_METERING_LATE_SECONDS", "172800"}});
  auto a = testkit::sign_up(s, "Rollup A");
  auto b = testkit::sign_up(s, "Rollup B");
  auto now = std::chrono::system_clock::now();
  std::string today = iso(now), yesterday = iso(now - 24h);
  std::string body = R"({"events":[)" + event("jobs_run", 3, "t1", today) + "," +
                     event("jobs_run", 4, "t2", today) + "," +
                     event("jobs_run", 10, "y1", yesterday) + "]}";
  ASSERT_EQ(call(s, "POST", "/api/usage/events", a.access_token, body).status, 200);
  ASSERT_EQ(call(s, "POST", "/api/usage/events", b.access_token, event("jobs_run", 1, "b")).status,
            200);

  std::string from = iso(now - 72h).substr(0, 10);
  array days;
  ASSERT_TRUE(eventually([&] {
    auto r =
        call(s, "GET", "/api/usage?meter=jobs_run&granularity=day&from=" + from, a.access_token);
    if (r.status != 200) return false;
    days = json_of(r)["data"].as_array();
    return days.size() == 2 && days[1].as_object().at("quantity").as_int64() == 7;
  })) << boost::json::serialize(days);
  EXPECT_EQ(days[0].as_object().at("period_start").as_string(),
            yesterday.substr(0, 10) + "T00:00:00Z");
  EXPECT_EQ(days[0].as_object().at("quantity").as_int64(), 10);
  EXPECT_EQ(days[1].as_object().at("period_start").as_string(), today.substr(0, 10) + "T00:00:00Z");

  auto months =
      call(s, "GET", "/api/usage?meter=jobs_run&granularity=month&from=" + from, a.access_token);
  ASSERT_EQ(months.status, 200) << months.body;
  long total = 0;
  object month_body = json_of(months);
  for (auto& m : month_body["data"].as_array()) total += m.as_object().at("quantity").as_int64();
  EXPECT_EQ(total, 17);
  // A late event re-rolls its day.
  ASSERT_EQ(call(s, "POST", "/api/usage/events", a.access_token,
                 event("jobs_run", 5, "y2", iso(now - 24h - 1min)))
                .status,
            200);
  EXPECT_TRUE(eventually([&] {
    auto r =
        call(s, "GET", "/api/usage?meter=jobs_run&granularity=day&from=" + from, a.access_token);
    auto d = json_of(r)["data"].as_array();
    long sum = 0;
    for (auto& x : d) sum += x.as_object().at("quantity").as_int64();
    return sum == 22;
  }));

  // B sees only its own one event (of this meter: the storage measurement may have given B a
  // storage_bytes figure meanwhile).
  auto rb =
      call(s, "GET", "/api/usage?meter=jobs_run&granularity=day&from=" + from, b.access_token);
  ASSERT_EQ(rb.status, 200);
  auto data_b = json_of(rb)["data"].as_array();
  ASSERT_EQ(data_b.size(), 1u) << rb.body;
  EXPECT_EQ(data_b[0].as_object().at("quantity").as_int64(), 1);
  // Bad queries are 422 naming the parameter.
  auto bad = call(s, "GET", "/api/usage?granularity=week", a.access_token);
  EXPECT_EQ(bad.status, 422);
  EXPECT_NE(bad.body.find("granularity"), std::string::npos);
  EXPECT_EQ(call(s, "GET", "/api/usage?from=yesterday", a.access_token).status, 422);
}

// ---- A Redis of the test's own, to restart ------------------------------------------------

class OwnRedis {
 public:
  OwnRedis() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    port_ = ntohs(addr.sin_port);
    start();
  }
  ~OwnRedis() { kill(); }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }
  void start() {
    std::vector<std::string> args{
        "redis-server", "--port", std::to_string(port_), "--bind", "127.0.0.1",
        "--save",       "",       "--appendonly",        "no"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    ASSERT_EQ(posix_spawnp(&pid_, "redis-server", &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    std::this_thread::sleep_for(500ms);
  }
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  int port_ = 0;
  pid_t pid_ = -1;
};

TEST(Metering, ARedisRestartLosesNoUsageAndTheCounterIsRebuilt) {
  testkit::TestDatabase db;
  set_free_plan_api_calls(db, 1000);
  OwnRedis redis;
  testkit::TestServer s(db, {{"HSEA_REDIS_URL", redis.url()},
                             {"HSEA_QUOTA_API_CALLS", "1000"},
                             {"HSEA_METERING_FLUSH_SECONDS", "1"}});
  auto a = testkit::sign_up(s, "Redis A");
  auto b = testkit::sign_up(s, "Redis B");
  for (int i = 0; i < 20; ++i) ASSERT_EQ(call(s, "GET", "/api/tenant", a.access_token).status, 200);
  ASSERT_EQ(call(s, "GET", "/api/tenant", b.access_token).status, 200);
  ASSERT_TRUE(eventually([&] { return db_api_calls(db, a.tenant_id) == 20; }));
  std::this_thread::sleep_for(1500ms);

  redis.kill();  // a crash: every counter gone
  for (int i = 0; i < 15; ++i) {
    auto r = call(s, "GET", "/api/tenant", a.access_token);
    ASSERT_EQ(r.status, 200) << r.body;  // requests never wait for Redis
  }
  std::this_thread::sleep_for(1500ms);
  redis.start();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(call(s, "GET", "/api/tenant", a.access_token).status, 200);

  // Every call is an event row, and the counter is rebuilt from them: both threads (new
  // connections may land on either) report the same remaining count.
  ASSERT_TRUE(eventually([&] { return db_api_calls(db, a.tenant_id) == 40; }))
      << db_api_calls(db, a.tenant_id);
  EXPECT_EQ(db_api_calls(db, b.tenant_id), 1);
  std::this_thread::sleep_for(5s);  // reconnect and a flush on every thread
  for (int i = 0; i < 4; ++i) {
    auto r = call(s, "GET", "/api/tenant", a.access_token);
    // 1000 - (40 + what this and earlier calls of this loop added on other threads, unflushed).
    // A batch committed while the counter is rebuilt can be missed by the counter (a known,
    // documented limit: the rows stay the truth, checked below): at most the 5 calls made while
    // Redis was down.
    long remaining = std::stol(r.header("x-quota-remaining"));
    EXPECT_LE(remaining, 1000 - 41 + 5) << i;
    EXPECT_GE(remaining, 1000 - 41 - i) << i;
  }
  auto rb = call(s, "GET", "/api/tenant", b.access_token);
  long remaining_b = std::stol(rb.header("x-quota-remaining"));
  EXPECT_GE(remaining_b, 1000 - 2);
  EXPECT_TRUE(eventually([&] { return db_api_calls(db, a.tenant_id) == 44; }));
  EXPECT_EQ(used_of(s, a.access_token, "api_calls"), 44);
}

}  // namespace
}  // namespace hsea
