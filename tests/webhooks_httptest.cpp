// Outbound webhooks from outside: the real `hsea serve` delivers to a Node receiver that
// verifies every request with the `svix` package's own verifier (tests/node/
// webhook-receiver.js). Delivery, retries with the same webhook-id, secret rotation, two tenants,
// bad input, the disabling of an endpoint that keeps failing and, in production, the SSRF rules.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <thread>

#include "core/ids.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::array;
using boost::json::object;
using testkit::Account;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::sql;
using testkit::str;

using testkit::bearer;
using testkit::eventually;

// The Node receiver, on a free port, logging to a temporary file.
class Receiver {
 public:
  Receiver() {
    std::string dir = "/tmp/hsea-webhooks-" + core::random_hex(6);
    ::mkdir(dir.c_str(), 0700);
    log_ = dir + "/requests.jsonl";
    std::string port_file = dir + "/port";
    std::string script = std::string(HSEA_SOURCE_DIR) + "/tests/node/webhook-receiver.js";
    pid_ = ::fork();
    if (pid_ == 0) {
      // Its output goes to a file: an inherited ctest pipe would outlive a crashed test.
      int out = ::open((dir + "/receiver.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      ::execlp("node", "node", script.c_str(), log_.c_str(), port_file.c_str(),
               static_cast<char*>(nullptr));
      ::_exit(127);
    }
    EXPECT_TRUE(
        eventually([&] { return std::ifstream(port_file).good(); }, std::chrono::seconds(20)))
        << "the receiver did not start";
    std::ifstream(port_file) >> port_;
  }
  ~Receiver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }
  // Answers `statuses` in turn on `path` (then 200), verifying with each named secret.
  void script(const std::string& path, const std::vector<int>& statuses, const object& secrets) {
    array s;
    for (int code : statuses) s.emplace_back(code);
    std::string body =
        boost::json::serialize(object{{"path", path}, {"statuses", s}, {"secrets", secrets}});
    auto r = http("POST", url("/control"), body, {"Content-Type: application/json"});
    ASSERT_EQ(r.status, 204) << r.body;
  }
  // Every request received on `path`, in order.
  std::vector<object> requests(const std::string& path) const {
    std::vector<object> out;
    std::ifstream in(log_);
    std::string line;
    while (std::getline(in, line)) {
      boost::system::error_code ec;
      auto v = boost::json::parse(line, ec);
      if (!ec && v.is_object() && str(v.as_object(), "path") == path) {
        out.push_back(v.as_object());
      }
    }
    return out;
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  std::string log_;
};

std::string header_of(const object& request, const std::string& name) {
  return str(request.at("headers").as_object(), name);
}
object body_of(const object& request) {
  return boost::json::parse(str(request, "body")).as_object();
}
bool verified(const object& request, const std::string& label) {
  const auto* v = request.at("verified").as_object().if_contains(label);
  return v != nullptr && v->is_bool() && v->as_bool();
}

class Webhooks : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    receiver_ = new Receiver();
    db_ = new testkit::TestDatabase();
    server_ = new testkit::TestServer(
        *db_, {{"HSEA_WEBHOOK_ALLOW_PRIVATE", "true"}, {"HSEA_JOB_POLL_MS", "250"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
    delete receiver_;
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const std::string& body = "") {
    std::vector<std::string> headers{bearer(token)};
    if (!body.empty()) headers.push_back("Content-Type: application/json");
    return http(method, server_->url(path), body, headers);
  }
  // A new endpoint at the receiver's `path`; its JSON (with the secret).
  static object endpoint(const Account& a, const std::string& path, const std::string& extra = "") {
    auto r = call("POST", "/api/webhooks/endpoints", a.access_token,
                  R"({"url":")" + receiver_->url(path) + "\"" + extra + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    return json_of(r);
  }
  static array deliveries(const Account& a, const std::string& endpoint_id) {
    auto r = call("GET", "/api/webhooks/endpoints/" + endpoint_id + "/deliveries", a.access_token);
    EXPECT_EQ(r.status, 200) << r.body;
    return json_of(r).at("data").as_array();
  }
  static void create_api_key(const Account& a, const std::string& name) {
    auto r = call("POST", "/api/api-keys", a.access_token,
                  R"({"name":")" + name + R"(","scopes":["read"]})");
    ASSERT_EQ(r.status, 201) << r.body;
  }

  static Receiver* receiver_;
  static testkit::TestDatabase* db_;
  static testkit::TestServer* server_;
};
Receiver* Webhooks::receiver_ = nullptr;
testkit::TestDatabase* Webhooks::db_ = nullptr;
testkit::TestServer* Webhooks::server_ = nullptr;

TEST_F(Webhooks, AnEventIsDeliveredSignedAndVerifiedBySvix) {
  Account a = testkit::sign_up(*server_, "Hooks Delivered");
  auto types = call("GET", "/api/webhooks/event-types", a.access_token);
  ASSERT_EQ(types.status, 200) << types.body;
  EXPECT_NE(types.body.find("\"api_key.created\""), std::string::npos) << types.body;
  EXPECT_NE(types.body.find("\"webhook.test\""), std::string::npos) << types.body;

  object ep = endpoint(a, "/delivered", R"(,"event_types":["api_key.created"])");
  std::string secret = str(ep, "secret");
  ASSERT_TRUE(secret.starts_with("whsec_")) << secret;
  receiver_->script("/delivered", {}, object{{"current", secret}});
  // The secret is shown once: never again, and never stored in plain text.
  auto got = call("GET", "/api/webhooks/endpoints/" + str(ep, "id"), a.access_token);
  ASSERT_EQ(got.status, 200) << got.body;
  EXPECT_EQ(got.body.find(secret), std::string::npos);
  EXPECT_EQ(got.body.find("whsec_"), std::string::npos);
  auto stored = sql(db_->admin_url(), "SELECT secret_sealed FROM webhook_endpoints WHERE id = $1",
                    {str(ep, "id")});
  EXPECT_EQ(stored[0][0].find(secret.substr(6)), std::string::npos);

  call("PATCH", "/api/tenant", a.access_token, R"({"name":"Hooks Renamed"})");  // not subscribed
  create_api_key(a, "hooked");
  ASSERT_TRUE(eventually([&] { return !receiver_->requests("/delivered").empty(); }))
      << "nothing was delivered";
  auto requests = receiver_->requests("/delivered");
  ASSERT_EQ(requests.size(), 1u);
  const object& req = requests[0];
  EXPECT_TRUE(verified(req, "current")) << boost::json::serialize(req);
  object body = body_of(req);
  EXPECT_EQ(str(body, "type"), "api_key.created");
  EXPECT_EQ(str(body, "id"), header_of(req, "webhook-id"));
  EXPECT_FALSE(str(body, "timestamp").empty());
  EXPECT_EQ(str(body.at("data").as_object(), "name"), "hooked");
  EXPECT_FALSE(body.at("data").as_object().contains("key")) << "the API key's secret was sent";
  EXPECT_EQ(header_of(req, "content-type"), "application/json");
  EXPECT_TRUE(header_of(req, "webhook-signature").starts_with("v1,"));
  auto ts = std::stoll(header_of(req, "webhook-timestamp"));
  EXPECT_LT(std::abs(ts - std::time(nullptr)), 60);
  // The event id is the one GET /api/events shows.
  auto event = call("GET", "/api/events/" + str(body, "id"), a.access_token);
  EXPECT_EQ(event.status, 200) << event.body;

  ASSERT_TRUE(eventually([&] {
    auto d = deliveries(a, str(ep, "id"));
    return d.size() == 1 && str(d[0].as_object(), "status") == "delivered";
  }));
  object d = deliveries(a, str(ep, "id"))[0].as_object();
  EXPECT_EQ(str(d, "event_id"), str(body, "id"));
  EXPECT_EQ(d.at("attempt_count").as_int64(), 1);
  object attempt = d.at("attempts").as_array()[0].as_object();
  EXPECT_EQ(attempt.at("status_code").as_int64(), 200);
  EXPECT_EQ(str(attempt, "response_body"), "ok");
  EXPECT_TRUE(attempt.at("error").is_null());

  auto metrics = http("GET", server_->url("/metrics"));
  EXPECT_NE(metrics.body.find("hsea_webhook_deliveries_total{outcome=\"delivered\"}"),
            std::string::npos);
}

TEST_F(Webhooks, AReceiverAnswering500Then200GetsTheEventTwiceWithTheSameWebhookId) {
  Account a = testkit::sign_up(*server_, "Hooks Retried");
  object ep = endpoint(a, "/retried", R"(,"event_types":["tenant.updated"])");
  receiver_->script("/retried", {500, 200}, object{{"current", str(ep, "secret")}});
  auto patched = call("PATCH", "/api/tenant", a.access_token, R"({"name":"Hooks Retried 2"})");
  ASSERT_EQ(patched.status, 200) << patched.body;
  // The first retry comes 5 s after the failure.
  ASSERT_TRUE(eventually([&] { return receiver_->requests("/retried").size() >= 2; },
                         std::chrono::seconds(40)))
      << receiver_->requests("/retried").size() << " requests";
  auto requests = receiver_->requests("/retried");
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(header_of(requests[0], "webhook-id"), header_of(requests[1], "webhook-id"));
  EXPECT_EQ(str(requests[0], "body"), str(requests[1], "body"));
  EXPECT_EQ(requests[0].at("status").as_int64(), 500);
  for (const auto& r : requests) EXPECT_TRUE(verified(r, "current"));
  EXPECT_EQ(str(body_of(requests[0]), "type"), "tenant.updated");

  ASSERT_TRUE(eventually([&] {
    auto d = deliveries(a, str(ep, "id"));
    return d.size() == 1 && str(d[0].as_object(), "status") == "delivered";
  }));
  object d = deliveries(a, str(ep, "id"))[0].as_object();
  EXPECT_EQ(d.at("attempt_count").as_int64(), 2);
  const array& log = d.at("attempts").as_array();
  ASSERT_EQ(log.size(), 2u);
  object first = log[0].as_object(), second = log[1].as_object();
  EXPECT_EQ(first.at("attempt").as_int64(), 1);
  EXPECT_EQ(first.at("status_code").as_int64(), 500);
  EXPECT_TRUE(str(first, "response_body").starts_with("receiver says 500"));
  EXPECT_LE(str(first, "response_body").size(), 1024u) << "more than 1 KiB kept";
  EXPECT_FALSE(str(first, "error").empty());
  EXPECT_EQ(second.at("attempt").as_int64(), 2);
  EXPECT_EQ(second.at("status_code").as_int64(), 200);
  // The endpoint's failure streak ended with the success.
  auto got = json_of(call("GET", "/api/webhooks/endpoints/" + str(ep, "id"), a.access_token));
  EXPECT_TRUE(got.at("failing_since").is_null());

  // Sent again on request: the same webhook-id once more.
  auto retried = call(
      "POST", "/api/webhooks/endpoints/" + str(ep, "id") + "/deliveries/" + str(d, "id") + "/retry",
      a.access_token);
  ASSERT_EQ(retried.status, 202) << retried.body;
  ASSERT_TRUE(eventually([&] { return receiver_->requests("/retried").size() == 3; }));
  EXPECT_EQ(header_of(receiver_->requests("/retried")[2], "webhook-id"),
            header_of(requests[0], "webhook-id"));
}

TEST_F(Webhooks, AfterARotationTheOldAndTheNewSecretBothSignDuringTheOverlap) {
  Account a = testkit::sign_up(*server_, "Hooks Rotated");
  object ep = endpoint(a, "/rotated", R"(,"event_types":["webhook.test"])");
  std::string old_secret = str(ep, "secret");
  auto rotated =
      call("POST", "/api/webhooks/endpoints/" + str(ep, "id") + "/rotate-secret", a.access_token);
  ASSERT_EQ(rotated.status, 200) << rotated.body;
  object r = json_of(rotated);
  std::string new_secret = str(r, "secret");
  ASSERT_TRUE(new_secret.starts_with("whsec_"));
  ASSERT_NE(new_secret, old_secret);
  EXPECT_FALSE(r.at("previous_secret_expires_at").is_null());
  receiver_->script(
      "/rotated", {},
      object{{"old", old_secret},
             {"new", new_secret},
             {"wrong", "whsec_" + std::string("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")}});
  auto test = call("POST", "/api/webhooks/endpoints/" + str(ep, "id") + "/test", a.access_token);
  ASSERT_EQ(test.status, 202) << test.body;
  ASSERT_TRUE(eventually([&] { return !receiver_->requests("/rotated").empty(); }));
  object req = receiver_->requests("/rotated")[0];
  EXPECT_TRUE(verified(req, "old")) << boost::json::serialize(req);
  EXPECT_TRUE(verified(req, "new")) << boost::json::serialize(req);
  EXPECT_FALSE(verified(req, "wrong")) << "svix accepts any secret: the check proves nothing";
  EXPECT_EQ(str(body_of(req), "type"), "webhook.test");
  EXPECT_NE(header_of(req, "webhook-signature").find(' '), std::string::npos);
  auto audit = call("GET", "/api/audit-logs?action=webhook_endpoint", a.access_token);
  EXPECT_NE(audit.body.find("webhook_endpoint.secret_rotated"), std::string::npos) << audit.body;
  EXPECT_NE(audit.body.find("webhook_endpoint.created"), std::string::npos) << audit.body;

  // Past the overlap only the new secret signs.
  sql(db_->admin_url(),
      "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' "
      "WHERE id = $1",
      {str(ep, "id")});
  ASSERT_EQ(
      call("POST", "/api/webhooks/endpoints/" + str(ep, "id") + "/test", a.access_token).status,
      202);
  ASSERT_TRUE(eventually([&] { return receiver_->requests("/rotated").size() == 2; }));
  object later = receiver_->requests("/rotated")[1];
  EXPECT_TRUE(verified(later, "new"));
  EXPECT_FALSE(verified(later, "old"));
  EXPECT_EQ(header_of(later, "webhook-signature").find(' '), std::string::npos);
}

TEST_F(Webhooks, AnotherTenantCannotSeeChangeOrTriggerEndpointsAndGetsNoneOfTheirEvents) {
  Account a = testkit::sign_up(*server_, "Hooks Tenant A");
  Account b = testkit::sign_up(*server_, "Hooks Tenant B");
  object ea = endpoint(a, "/iso-a");
  object eb = endpoint(b, "/iso-b");
  receiver_->script("/iso-a", {}, object{{"a", str(ea, "secret")}});
  receiver_->script("/iso-b", {}, object{{"b", str(eb, "secret")}});
  create_api_key(a, "a-key");
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : receiver_->requests("/iso-a")) {
      if (str(body_of(r), "type") == "api_key.created") return true;
    }
    return false;
  }));
  std::string a_ep = str(ea, "id");
  std::string a_delivery = str(deliveries(a, a_ep)[0].as_object(), "id");
  std::string base = "/api/webhooks/endpoints/" + a_ep;
  for (const auto& [method, path, body] :
       {std::tuple{"GET", base, ""}, std::tuple{"PATCH", base, R"({"url":"http://127.0.0.1:1/x"})"},
        std::tuple{"DELETE", base, ""}, std::tuple{"POST", base + "/rotate-secret", ""},
        std::tuple{"POST", base + "/test", ""}, std::tuple{"GET", base + "/deliveries", ""},
        std::tuple{"POST", base + "/deliveries/" + a_delivery + "/retry", ""},
        std::tuple{
            "POST",
            "/api/webhooks/endpoints/" + str(eb, "id") + "/deliveries/" + a_delivery + "/retry",
            ""}}) {
    auto r = call(method, path, b.access_token, body);
    EXPECT_EQ(r.status, 404) << method << " " << path << ": " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(r.body.find(a.tenant_id), std::string::npos);
  }
  auto list = call("GET", "/api/webhooks/endpoints", b.access_token);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body.find(a_ep), std::string::npos) << list.body;
  // Nothing of A's changed.
  auto still = json_of(call("GET", base, a.access_token));
  EXPECT_EQ(str(still, "url"), receiver_->url("/iso-a"));
  EXPECT_TRUE(still.at("previous_secret_expires_at").is_null());
  EXPECT_EQ(deliveries(a, a_ep).size(), 2u) << "webhook_endpoint.created and api_key.created";

  // B's endpoint received only B's events.
  create_api_key(b, "b-key");
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : receiver_->requests("/iso-b")) {
      if (str(body_of(r), "type") == "api_key.created") return true;
    }
    return false;
  }));
  std::set<std::string> b_events;
  object b_list = json_of(call("GET", "/api/events", b.access_token));
  for (const auto& e : b_list.at("data").as_array()) {
    b_events.insert(str(e.as_object(), "id"));
  }
  for (const auto& r : receiver_->requests("/iso-b")) {
    EXPECT_TRUE(b_events.contains(header_of(r, "webhook-id")))
        << "B's endpoint got an event that is not B's: " << str(r, "body");
    // The endpoint's own creation may be delivered before the receiver learns its secret.
    if (str(body_of(r), "type") != "webhook_endpoint.created") EXPECT_TRUE(verified(r, "b"));
  }
  for (const auto& r : receiver_->requests("/iso-a")) {
    EXPECT_FALSE(b_events.contains(header_of(r, "webhook-id"))) << str(r, "body");
  }
}

TEST_F(Webhooks, BadInputIsA422NamingTheFieldAndChangesNothing) {
  Account a = testkit::sign_up(*server_, "Hooks Bad Input");
  object ep = endpoint(a, "/bad", R"(,"description":"kept","event_types":["tenant.updated"])");
  std::string id = str(ep, "id");
  auto count = [&] {
    return sql(db_->admin_url(), "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1",
               {a.tenant_id})[0][0];
  };
  std::string before = count();
  std::string long_text(501, 'x');
  struct Case {
    std::string body, field;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"url":"not a url"})", "/url"},
           {R"({"url":"ftp://example.com/hook"})", "/url"},
           {R"({"url":"https://user:pw@example.com/"})", "/url"},
           {R"({"url":""})", "/url"},
           {R"({"url":"https://example.com/","description":")" + long_text + "\"}", "/description"},
           {R"({"url":"https://example.com/","event_types":["no.such.type"]})", "/event_types"},
           {R"({"url":"https://example.com/","event_types":["tenant.updated","nope"]})",
            "/event_types"},
           {R"({"url":"https://example.com/","event_types":[1]})", "/event_types/0"},
           {R"({"description":"no url"})", "/url"}}) {
    auto r = call("POST", "/api/webhooks/endpoints", a.access_token, c.body);
    EXPECT_EQ(r.status, 422) << c.body << ": " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_NE(r.body.find("\"" + c.field), std::string::npos) << c.body << ": " << r.body;
    if (c.body.find(R"("url":)") == std::string::npos) continue;  // PATCH needs no url
    auto p = call("PATCH", "/api/webhooks/endpoints/" + id, a.access_token, c.body);
    EXPECT_EQ(p.status, 422) << "PATCH " << c.body << ": " << p.body;
  }
  EXPECT_EQ(count(), before);
  auto still = json_of(call("GET", "/api/webhooks/endpoints/" + id, a.access_token));
  EXPECT_EQ(str(still, "url"), receiver_->url("/bad"));
  EXPECT_EQ(str(still, "description"), "kept");
  ASSERT_EQ(still.at("event_types").as_array().size(), 1u);
  EXPECT_EQ(still.at("event_types").as_array()[0].as_string(), "tenant.updated");
  for (const char* path : {"/api/webhooks/endpoints/not-a-uuid",
                           "/api/webhooks/endpoints/00000000-0000-7000-8000-000000000000"}) {
    EXPECT_EQ(call("GET", path, a.access_token).status, 404) << path;
  }
  // A good change goes through; members cannot manage endpoints.
  auto ok = call("PATCH", "/api/webhooks/endpoints/" + id, a.access_token,
                 R"({"event_types":[],"description":"all types"})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(json_of(ok).at("event_types").as_array().empty());
  Account m = testkit::sign_up(*server_, "Hooks Member Home");
  testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  auto as_member = http("GET", server_->url("/api/webhooks/endpoints"), "",
                        {bearer(m.access_token), "X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(as_member.status, 403) << as_member.body;
  // API keys are refused whatever their scopes: endpoints are managed by users only.
  auto key = call("POST", "/api/api-keys", a.access_token, R"({"name":"w","scopes":["write"]})");
  ASSERT_EQ(key.status, 201) << key.body;
  EXPECT_EQ(call("GET", "/api/webhooks/endpoints", str(json_of(key), "key")).status, 403);
}

TEST_F(Webhooks, AnEndpointFailingForFiveDaysIsDisabledAuditedAnnouncedAndItsAdminsEmailed) {
  Account a = testkit::sign_up(*server_, "Hooks Disabled");
  object ep = endpoint(a, "/failing", R"(,"event_types":["webhook.test"])");
  std::string id = str(ep, "id");
  receiver_->script("/failing", {503, 503, 503}, object{{"current", str(ep, "secret")}});
  sql(db_->admin_url(),
      "UPDATE webhook_endpoints SET failing_since = now() - interval '6 days' WHERE id = $1", {id});
  ASSERT_EQ(call("POST", "/api/webhooks/endpoints/" + id + "/test", a.access_token).status, 202);
  ASSERT_TRUE(eventually([&] {
    return !json_of(call("GET", "/api/webhooks/endpoints/" + id, a.access_token))
                .at("enabled")
                .as_bool();
  }));
  object got = json_of(call("GET", "/api/webhooks/endpoints/" + id, a.access_token));
  EXPECT_NE(str(got, "disabled_reason").find("5 days"), std::string::npos)
      << str(got, "disabled_reason");
  EXPECT_EQ(receiver_->requests("/failing").size(), 1u);
  ASSERT_TRUE(eventually([&] {
    auto d = deliveries(a, id);
    return d.size() == 1 && str(d[0].as_object(), "status") == "failed";
  }));
  auto events = call("GET", "/api/events?type=webhook_endpoint.disabled", a.access_token);
  EXPECT_NE(events.body.find(id), std::string::npos) << events.body;
  auto audit = call("GET", "/api/audit-logs?action=webhook_endpoint.disabled", a.access_token);
  EXPECT_NE(audit.body.find(id), std::string::npos) << audit.body;
  // The tenant's owner is told by e-mail (stored: this server has no SMTP server).
  ASSERT_TRUE(eventually([&] {
    auto to_owner = testkit::stored_mail_to(*db_, a.email, "webhook_disabled");
    return to_owner.size() == 1 && to_owner[0].tenant_id == a.tenant_id;
  })) << "no e-mail to the owner about the disabled endpoint";
  auto notice = testkit::stored_mail_to(*db_, a.email, "webhook_disabled");
  EXPECT_NE(notice[0].text.find("/failing"), std::string::npos) << notice[0].text;
  // Disabled: no test, no retry until it is enabled again.
  EXPECT_EQ(call("POST", "/api/webhooks/endpoints/" + id + "/test", a.access_token).status, 409);
  auto enabled =
      call("PATCH", "/api/webhooks/endpoints/" + id, a.access_token, R"({"enabled":true})");
  ASSERT_EQ(enabled.status, 200) << enabled.body;
  EXPECT_TRUE(json_of(enabled).at("failing_since").is_null());
  EXPECT_TRUE(json_of(enabled).at("disabled_reason").is_null());
}

TEST(WebhooksProduction, HttpAndNonPublicEndpointsAreRefusedWhenRegisteredAndWhenConnecting) {
  Receiver receiver;
  testkit::TestDatabase db;
  testkit::TestServer server(db, {{"HSEA_ENV", "production"},
                                  {"HSEA_PUBLIC_URL", "https://hsea.example.com"},
                                  {"HSEA_JOB_POLL_MS", "250"}});
  Account a = testkit::sign_up(server, "Hooks Production");
  auto post = [&](const std::string& url) {
    return http("POST", server.url("/api/webhooks/endpoints"),
                R"({"event_types":["webhook.test"],"url":")" + url + "\"}",
                {bearer(a.access_token), "Content-Type: application/json"});
  };
  for (const std::string& url :
       {receiver.url("/prod"), std::string("http://example.com/hook"),
        "https://127.0.0.1:" + std::to_string(receiver.port()) + "/prod",
        std::string("https://localhost/hook"), std::string("https://[::1]/hook"),
        std::string("https://169.254.169.254/latest/meta-data"),
        std::string("https://[fd00:ec2::254]/latest"), std::string("https://10.0.0.8/hook"),
        std::string("https://[::ffff:127.0.0.1]/hook"), std::string("https://100.64.1.1/hook")}) {
    auto r = post(url);
    EXPECT_EQ(r.status, 422) << url << ": " << r.body;
    EXPECT_NE(r.body.find("\"/url\""), std::string::npos) << url << ": " << r.body;
  }
  EXPECT_EQ(sql(db.admin_url(), "SELECT count(*) FROM webhook_endpoints")[0][0], "0");

  // A host that resolved to a public address when registered and to a private one now (DNS
  // rebinding) is refused at the connection: simulated by changing the stored URL.
  auto created = post("https://8.8.8.8/hook");
  ASSERT_EQ(created.status, 201) << created.body;
  std::string id = str(json_of(created), "id");
  sql(db.admin_url(), "UPDATE webhook_endpoints SET url = $2 WHERE id = $1",
      {id, "https://127.0.0.1:" + std::to_string(receiver.port()) + "/rebound"});
  auto test = http("POST", server.url("/api/webhooks/endpoints/" + id + "/test"), "",
                   {bearer(a.access_token)});
  ASSERT_EQ(test.status, 202) << test.body;
  std::string error;
  ASSERT_TRUE(eventually([&] {
    auto r = sql(db.admin_url(),
                 "SELECT coalesce(error, '') FROM webhook_attempts WHERE endpoint_id = $1", {id});
    if (r.empty()) return false;
    error = r[0][0];
    return true;
  }));
  EXPECT_NE(error.find("refused"), std::string::npos) << error;
  EXPECT_TRUE(receiver.requests("/rebound").empty());
}

}  // namespace
}  // namespace hsea
