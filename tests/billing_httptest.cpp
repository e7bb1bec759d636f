// Billing from outside (HSEA-021..025): plans, the subscription every tenant starts with, the
// operator API, the entitlement gate, Stripe's webhook intake, and without Stripe the 503
// "billing not configured" answers, through the real `hsea serve` with two tenants.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <ctime>
#include <functional>
#include <thread>

#include "billing/billing.hpp"
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

const std::string kWebhookSecret = "whsec_test_billing_secret_1";
const std::string kOldWebhookSecret = "whsec_test_billing_secret_0";
const std::string kAdminToken = "operator-token-0123456789";

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }
std::string tenant_header(const std::string& id) { return "X-Tenant-Id: " + id; }

bool eventually(const std::function<bool()>& done,
                std::chrono::seconds timeout = std::chrono::seconds(20)) {
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return done();
}

std::string code_of(const HttpResponse& r) {
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  return !ec && v.is_object() ? str(v.as_object(), "code") : "";
}

class Billing : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    // No Stripe key: the free plan applies, paid-billing endpoints answer 503.
    server_ = new testkit::TestServer(
        *db_, {{"HSEA_STRIPE_WEBHOOK_SECRET", kOldWebhookSecret + "," + kWebhookSecret},
               {"HSEA_BILLING_ADMIN_TOKEN", kAdminToken}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }
  static std::string url(const std::string& path) { return server_->url(path); }
  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const std::string& body = "",
                           std::vector<std::string> headers = {}) {
    if (!token.empty()) headers.push_back(bearer(token));
    return http(method, url(path), body, headers);
  }
  static std::string scalar(const std::string& statement, const std::vector<std::string>& p) {
    auto rows = sql(db_->admin_url(), statement, p);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }
  static HttpResponse post_event(const std::string& body, const std::string& signature) {
    return http(
        "POST", url("/api/webhooks/stripe"), body,
        {"Content-Type: application/json; charset=utf-8", "Stripe-Signature: " + signature});
  }
  static std::string event(const std::string& id, const std::string& type,
                           const std::string& customer = "cus_nobody") {
    object e{
        {"id", id},
        {"object", "event"},
        {"type", type},
        {"created", static_cast<std::int64_t>(std::time(nullptr))},
        {"api_version", billing::kStripeVersion},
        {"data",
         object{{"object",
                 object{{"id", "pm_1"}, {"object", "payment_method"}, {"customer", customer}}}}}};
    return boost::json::serialize(e);
  }

  static testkit::TestDatabase* db_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* Billing::db_ = nullptr;
testkit::TestServer* Billing::server_ = nullptr;

TEST_F(Billing, PlansArePublicSeededAndCarryTheirLimits) {
  HttpResponse r = http("GET", url("/api/plans"));
  ASSERT_EQ(r.status, 200) << r.body;
  object list = json_of(r);
  const array& data = list.at("data").as_array();
  std::vector<std::string> ids;
  for (const auto& p : data) ids.push_back(str(p.as_object(), "id"));
  EXPECT_EQ(ids, (std::vector<std::string>{"free", "starter", "pro", "enterprise"}));
  EXPECT_FALSE(list.at("has_more").as_bool());
  // Pages in the same order, after a plan id.
  object first = json_of(http("GET", url("/api/plans?limit=3")));
  EXPECT_EQ(first.at("data").as_array().size(), 3u);
  EXPECT_TRUE(first.at("has_more").as_bool());
  object rest = json_of(http("GET", url("/api/plans?limit=3&starting_after=pro")));
  ASSERT_EQ(rest.at("data").as_array().size(), 1u);
  EXPECT_EQ(str(rest.at("data").as_array()[0].as_object(), "id"), "enterprise");
  EXPECT_FALSE(rest.at("has_more").as_bool());
  EXPECT_EQ(http("GET", url("/api/plans?starting_after=Not%20a%20plan")).status, 422);
  const object& pro = data[2].as_object();
  EXPECT_EQ(pro.at("monthly_amount").as_int64(), 9900);
  EXPECT_EQ(pro.at("yearly_amount").as_int64(), 99000);
  EXPECT_EQ(str(pro, "currency"), "usd");
  EXPECT_TRUE(pro.at("features").at("sso").as_bool());
  for (const char* key : {"api_calls", "storage_bytes", "seats", "requests_per_second", "burst"}) {
    EXPECT_TRUE(pro.at("limits").as_object().contains(key)) << key;
  }
  EXPECT_FALSE(pro.contains("stripe_product_id"));  // the operator's view only
}

TEST_F(Billing, ANewTenantStartsOnFreeWithHistoryAuditAndEvent) {
  Account a = testkit::sign_up(*server_, "Free Co");
  HttpResponse r = call("GET", "/api/subscriptions/current", a.access_token);
  ASSERT_EQ(r.status, 200) << r.body;
  object s = json_of(r);
  EXPECT_EQ(str(s, "plan_id"), "free");
  EXPECT_EQ(str(s, "status"), "active");
  EXPECT_TRUE(s.at("current_period_end").is_null());
  EXPECT_FALSE(s.at("cancel_at_period_end").as_bool());
  EXPECT_EQ(s.at("plan").at("limits").at("seats").as_int64(), 3);
  EXPECT_EQ(scalar("SELECT count(*) FROM subscription_history WHERE tenant_id = $1", {a.tenant_id}),
            "1");
  // Audited, and an event for the tenant's webhooks, in the sign-up's transaction.
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND "
                   "action = 'subscription.created'",
                   {a.tenant_id}),
            "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE tenant_id = $1 AND "
                   "type = 'subscription.created'",
                   {a.tenant_id}),
            "1");
  // POST /api/tenants starts one the same way.
  HttpResponse t = call("POST", "/api/tenants", a.access_token, R"({"name":"Second Co"})");
  ASSERT_EQ(t.status, 201) << t.body;
  std::string second = str(json_of(t), "id");
  EXPECT_EQ(
      scalar("SELECT plan_id || ':' || status FROM subscriptions WHERE tenant_id = $1", {second}),
      "free:active");
}

TEST_F(Billing, WithoutStripePaidBillingAnswers503BillingNotConfigured) {
  Account a = testkit::sign_up(*server_, "No Stripe Co");
  struct Case {
    const char* method;
    const char* path;
    const char* body;
  };
  for (const Case& c :
       {Case{"POST", "/api/subscriptions/checkout",
             R"({"plan_id":"pro","interval":"month","success_url":"http://127.0.0.1/ok",)"
             R"("cancel_url":"http://127.0.0.1/no"})"},
        Case{"POST", "/api/subscriptions/upgrade", R"({"plan_id":"pro"})"},
        Case{"POST", "/api/subscriptions/downgrade", R"({"plan_id":"free"})"},
        Case{"POST", "/api/subscriptions/cancel", R"({"at_period_end":true})"},
        Case{"POST", "/api/subscriptions/reactivate", ""},
        Case{"GET", "/api/subscriptions/preview?plan_id=pro", ""}}) {
    HttpResponse r =
        call(c.method, c.path, a.access_token, c.body, {"Content-Type: application/json"});
    EXPECT_EQ(r.status, 503) << c.path << " " << r.body;
    EXPECT_EQ(code_of(r), "billing_not_configured") << c.path;
    EXPECT_EQ(r.header("content-type"), "application/problem+json") << c.path;
  }
  // The free plan still applies and is readable.
  EXPECT_EQ(call("GET", "/api/subscriptions/current", a.access_token).status, 200);
}

TEST_F(Billing, OnlyOwnersAndTheBillingRoleChangeBilling) {
  Account owner = testkit::sign_up(*server_, "Roles Co");
  Account member = testkit::sign_up(*server_, "Member Home");
  Account billing = testkit::sign_up(*server_, "Billing Home");
  Account admin = testkit::sign_up(*server_, "Admin Home");
  testkit::add_member(*db_, owner.tenant_id, member.user_id, "member");
  testkit::add_member(*db_, owner.tenant_id, billing.user_id, "billing");
  testkit::add_member(*db_, owner.tenant_id, admin.user_id, "admin");
  std::string body = R"({"plan_id":"pro"})";
  std::vector<std::string> in{tenant_header(owner.tenant_id), "Content-Type: application/json"};
  // Admission first: members and admins are refused before anything else is looked at.
  for (const Account* who : {&member, &admin}) {
    HttpResponse r = call("POST", "/api/subscriptions/upgrade", who->access_token, body, in);
    EXPECT_EQ(r.status, 403) << r.body;
    EXPECT_EQ(
        call("GET", "/api/subscriptions/preview?plan_id=pro", who->access_token, "", in).status,
        403);
    // Everyone in the tenant may see the plan.
    EXPECT_EQ(call("GET", "/api/subscriptions/current", who->access_token, "", in).status, 200);
  }
  // The billing role and the owner pass admission (and meet the missing Stripe key).
  for (const Account* who : {&billing, &owner}) {
    HttpResponse r = call("POST", "/api/subscriptions/upgrade", who->access_token, body, in);
    EXPECT_EQ(r.status, 503) << r.body;
  }
  // API keys: billing:read reads; no key changes billing (not even with write).
  HttpResponse k = call("POST", "/api/api-keys", owner.access_token,
                        R"({"name":"billing reader","scopes":["billing:read"]})");
  ASSERT_EQ(k.status, 201) << k.body;
  std::string key = str(json_of(k), "key");
  EXPECT_EQ(call("GET", "/api/subscriptions/current", key).status, 200);
  EXPECT_EQ(call("POST", "/api/subscriptions/cancel", key, "{}", {"Content-Type: application/json"})
                .status,
            403);
}

TEST_F(Billing, TenantBNeverSeesTenantAsSubscription) {
  Account a = testkit::sign_up(*server_, "Tenant A");
  Account b = testkit::sign_up(*server_, "Tenant B");
  sql(db_->admin_url(),
      "UPDATE subscriptions SET plan_id = 'pro', stripe_customer_id = 'cus_a_' || $1 "
      "WHERE tenant_id = $1",
      {a.tenant_id});
  HttpResponse mine = call("GET", "/api/subscriptions/current", b.access_token);
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(str(json_of(mine), "plan_id"), "free");
  // B's token naming A's tenant: not a member.
  HttpResponse theirs =
      call("GET", "/api/subscriptions/current", b.access_token, "", {tenant_header(a.tenant_id)});
  EXPECT_EQ(theirs.status, 403) << theirs.body;
  EXPECT_EQ(theirs.body.find("cus_a_"), std::string::npos);
  HttpResponse change = call("POST", "/api/subscriptions/cancel", b.access_token, "{}",
                             {tenant_header(a.tenant_id), "Content-Type: application/json"});
  EXPECT_EQ(change.status, 403) << change.body;
  EXPECT_EQ(scalar("SELECT plan_id FROM subscriptions WHERE tenant_id = $1", {a.tenant_id}), "pro");
}

TEST_F(Billing, StripeWebhookVerifiesSignatureStoresOnceAndProcessesFromTheQueue) {
  std::string id = "evt_" + core::random_hex(8);
  std::string body = event(id, "payment_method.attached");
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto stored = [&] { return scalar("SELECT count(*) FROM stripe_events WHERE id = $1", {id}); };

  // Refused, nothing stored: no header, a wrong secret, a changed body, a stale or future
  // timestamp.
  EXPECT_EQ(post_event(body, "").status, 400);
  EXPECT_EQ(post_event(body, billing::sign_payload(body, "whsec_wrong", now)).status, 400);
  EXPECT_EQ(post_event(body + " ", billing::sign_payload(body, kWebhookSecret, now)).status, 400);
  HttpResponse stale = post_event(body, billing::sign_payload(body, kWebhookSecret, now - 301));
  EXPECT_EQ(stale.status, 400);
  EXPECT_EQ(code_of(stale), "bad_request");
  EXPECT_EQ(post_event(body, billing::sign_payload(body, kWebhookSecret, now + 301)).status, 400);
  EXPECT_EQ(stored(), "0");

  // Signed with the old secret during a rotation, among other v1 signatures: accepted.
  std::string header =
      billing::sign_payload(body, kOldWebhookSecret, now) + ",v1=" + std::string(64, '0');
  HttpResponse ok = post_event(body, header);
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(stored(), "1");
  // Twice: answered, stored once, processed once.
  HttpResponse again = post_event(body, billing::sign_payload(body, kWebhookSecret, now));
  EXPECT_EQ(again.status, 200);
  EXPECT_TRUE(json_of(again).at("duplicate").as_bool());
  EXPECT_EQ(stored(), "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM jobs WHERE kind = 'billing.stripe_event' AND "
                   "payload->>'event_id' = $1",
                   {id}),
            "1");
  // Its customer is no tenant's: processed by the worker and marked so.
  EXPECT_TRUE(eventually([&] {
    return scalar("SELECT outcome FROM stripe_events WHERE id = $1", {id}) ==
           "ignored: unknown customer";
  }));
}

TEST_F(Billing, StripeEventsReachTheTenantOfTheirCustomer) {
  Account a = testkit::sign_up(*server_, "Card Co");
  Account b = testkit::sign_up(*server_, "Other Co");
  std::string customer = "cus_" + core::random_hex(6);
  sql(db_->admin_url(), "UPDATE subscriptions SET stripe_customer_id = $2 WHERE tenant_id = $1",
      {a.tenant_id, customer});
  std::string id = "evt_" + core::random_hex(8);
  std::string body = event(id, "payment_method.attached", customer);
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  ASSERT_EQ(post_event(body, billing::sign_payload(body, kWebhookSecret, now)).status, 200);
  ASSERT_TRUE(eventually([&] {
    return scalar("SELECT outcome FROM stripe_events WHERE id = $1", {id}) == "processed";
  }));
  auto audited = [&](const std::string& tenant) {
    return scalar(
        "SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND "
        "action = 'billing.payment_method_attached' AND actor_type = 'stripe_webhook' "
        "AND actor_id = $2",
        {tenant, id});
  };
  EXPECT_EQ(audited(a.tenant_id), "1");
  EXPECT_EQ(audited(b.tenant_id), "0");
  // An event type nobody handles is kept and marked.
  std::string other = "evt_" + core::random_hex(8);
  std::string unhandled = event(other, "customer.tax_id.created", customer);
  ASSERT_EQ(post_event(unhandled, billing::sign_payload(unhandled, kWebhookSecret, now)).status,
            200);
  EXPECT_TRUE(eventually([&] {
    return scalar("SELECT outcome FROM stripe_events WHERE id = $1", {other}) ==
           "ignored: no handler";
  }));
}

TEST_F(Billing, OperatorManagesPlansWithItsToken) {
  std::string id = "team" + core::random_hex(2);
  std::string create = R"({"id":")" + id +
                       R"(","name":"Team","monthly_amount":4900,"yearly_amount":49000,)"
                       R"("features":{"webhooks":true},"limits":{"seats":20},"sort_order":5})";
  std::vector<std::string> json{"Content-Type: application/json"};
  EXPECT_EQ(call("POST", "/api/admin/plans", "", create, json).status, 401);
  EXPECT_EQ(call("POST", "/api/admin/plans", "wrong-token-0123456789", create, json).status, 401);
  HttpResponse made = call("POST", "/api/admin/plans", kAdminToken, create, json);
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(str(json_of(made), "status"), "active");
  EXPECT_EQ(call("POST", "/api/admin/plans", kAdminToken, create, json).status, 409);
  // Limits must be non-negative integers.
  HttpResponse bad =
      call("PATCH", "/api/admin/plans/" + id, kAdminToken, R"({"limits":{"seats":-1}})", json);
  EXPECT_EQ(bad.status, 422) << bad.body;
  HttpResponse changed = call("PATCH", "/api/admin/plans/" + id, kAdminToken,
                              R"({"monthly_amount":5900,"limits":{"seats":25}})", json);
  ASSERT_EQ(changed.status, 200) << changed.body;
  EXPECT_EQ(json_of(changed).at("monthly_amount").as_int64(), 5900);
  auto listed = [&] {
    std::string body = http("GET", url("/api/plans")).body;
    return body.find("\"" + id + "\"") != std::string::npos;
  };
  EXPECT_TRUE(listed());
  HttpResponse archived = call("POST", "/api/admin/plans/" + id + "/archive", kAdminToken);
  ASSERT_EQ(archived.status, 200) << archived.body;
  EXPECT_EQ(str(json_of(archived), "status"), "archived");
  EXPECT_FALSE(listed());
  EXPECT_EQ(call("POST", "/api/admin/plans/free/archive", kAdminToken).status, 409);
  EXPECT_EQ(call("POST", "/api/admin/plans/nope/archive", kAdminToken).status, 404);
  HttpResponse all = call("GET", "/api/admin/plans", kAdminToken);
  ASSERT_EQ(all.status, 200);
  EXPECT_NE(all.body.find("\"" + id + "\""), std::string::npos);
  EXPECT_NE(all.body.find("stripe_product_id"), std::string::npos);
}

TEST_F(Billing, ARouteNeedingAPlanFeatureAnswers402PlanRequired) {
  Account a = testkit::sign_up(*server_, "Feature Co");
  std::string endpoint = R"({"url":"https://example.com/hook"})";
  std::vector<std::string> json{"Content-Type: application/json"};
  // A second node on the same database, whose cache (one thread: one cache) holds the tenant's
  // plan already.
  testkit::TestServer other(*db_, {{"HSEA_THREADS", "1"}});
  std::vector<std::string> with{bearer(a.access_token), "Content-Type: application/json"};
  HttpResponse warm = http("POST", other.url("/api/webhooks/endpoints"), endpoint, with);
  // Past the entitlement step (the address itself may be refused later: 422).
  ASSERT_TRUE(warm.status == 201 || warm.status == 422) << warm.body;
  // The free plan includes webhooks; the operator takes them out of it.
  HttpResponse off = call("PATCH", "/api/admin/plans/free", kAdminToken,
                          R"({"features":{"webhooks":false}})", json);
  ASSERT_EQ(off.status, 200) << off.body;
  // Every node's cache is emptied by the change (NOTIFY), well before its 60 s lifetime.
  HttpResponse r;
  EXPECT_TRUE(eventually(
      [&] {
        r = call("POST", "/api/webhooks/endpoints", a.access_token, endpoint, json);
        return r.status == 402;
      },
      std::chrono::seconds(5)))
      << r.status << " " << r.body;
  EXPECT_EQ(code_of(r), "plan_required");
  EXPECT_NE(r.body.find("webhooks"), std::string::npos);
  HttpResponse there;
  EXPECT_TRUE(eventually(
      [&] {
        there = http("POST", other.url("/api/webhooks/endpoints"), endpoint, with);
        return there.status == 402;
      },
      std::chrono::seconds(5)))
      << there.status << " " << there.body;
  HttpResponse on = call("PATCH", "/api/admin/plans/free", kAdminToken,
                         R"({"features":{"webhooks":true}})", json);
  ASSERT_EQ(on.status, 200);
  EXPECT_TRUE(eventually(
      [&] {
        r = call("POST", "/api/webhooks/endpoints", a.access_token, endpoint, json);
        return r.status != 402;
      },
      std::chrono::seconds(5)))
      << r.body;
}

TEST(BillingTrial, ANewTenantTriesTheConfiguredPlan) {
  testkit::TestDatabase db;
  testkit::TestServer server(
      db, {{"HSEA_BILLING_TRIAL_PLAN", "pro"}, {"HSEA_BILLING_TRIAL_DAYS", "7"}});
  Account a = testkit::sign_up(server, "Trial Co");
  HttpResponse r =
      http("GET", server.url("/api/subscriptions/current"), "", {bearer(a.access_token)});
  ASSERT_EQ(r.status, 200) << r.body;
  object s = json_of(r);
  EXPECT_EQ(str(s, "plan_id"), "pro");
  EXPECT_EQ(str(s, "status"), "trialing");
  EXPECT_EQ(testkit::sql(db.admin_url(),
                         "SELECT trial_end BETWEEN now() + interval '6 days 23 hours' AND "
                         "now() + interval '7 days 1 hour' FROM subscriptions WHERE tenant_id = $1",
                         {a.tenant_id})[0][0],
            "t");
  // The trial's features apply: Pro has SSO.
  EXPECT_TRUE(s.at("plan").at("features").at("sso").as_bool());
  // When the trial ends unpaid, the free plan applies: here without webhooks.
  testkit::sql(db.admin_url(),
               "UPDATE plans SET features = features || '{\"webhooks\": false}' "
               "WHERE id = 'free'");
  std::string endpoint = R"({"url":"https://example.com/hook"})";
  std::vector<std::string> with{bearer(a.access_token), "Content-Type: application/json"};
  HttpResponse during = http("POST", server.url("/api/webhooks/endpoints"), endpoint, with);
  EXPECT_NE(during.status, 402) << during.body;
  testkit::sql(db.admin_url(),
               "UPDATE subscriptions SET trial_end = now() - interval '1 minute' "
               "WHERE tenant_id = $1",
               {a.tenant_id});
  HttpResponse after;
  EXPECT_TRUE(eventually(
      [&] {
        after = http("POST", server.url("/api/webhooks/endpoints"), endpoint, with);
        return after.status == 402;
      },
      std::chrono::seconds(5)))
      << after.status << " " << after.body;
  EXPECT_NE(after.body.find("(free)"), std::string::npos) << after.body;
  // Audited, and an event for the tenant's webhooks.
  for (const char* table : {"audit_logs WHERE action", "events WHERE type"}) {
    EXPECT_EQ(testkit::sql(db.admin_url(),
                           std::string("SELECT count(*) FROM ") + table +
                               " = 'subscription.created' AND tenant_id = $1",
                           {a.tenant_id})[0][0],
              "1")
        << table;
  }
}

}  // namespace
}  // namespace hsea
