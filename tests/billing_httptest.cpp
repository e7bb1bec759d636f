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
#include "testkit/smtp_sink.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::array;
using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::code_of;
using testkit::eventually;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::sql;
using testkit::str;

const std::string kWebhookSecret = "whsec_test_billing_secret_1";
const std::string kOldWebhookSecret = "whsec_test_billing_secret_0";

std::string tenant_header(const std::string& id) { return "X-Tenant-Id: " + id; }

class Billing : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    // No Stripe key: the free plan applies, paid-billing endpoints answer 503.
    server_ = new testkit::TestServer(
        *db_, {{"HSEA_STRIPE_WEBHOOK_SECRET", kOldWebhookSecret + "," + kWebhookSecret}});
    // The operator: a user made platform staff (`hsea staff grant` does the same insert).
    staff_ = new Account(testkit::sign_up(*server_, "Operators"));
    sql(db_->admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {staff_->user_id});
  }
  static void TearDownTestSuite() {
    delete staff_;
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
  static Account* staff_;
};
testkit::TestDatabase* Billing::db_ = nullptr;
testkit::TestServer* Billing::server_ = nullptr;
Account* Billing::staff_ = nullptr;

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
  EXPECT_EQ(call("GET", "/api/invoices", key).status, 200);
  // No scope grants a billing change: there is no billing:write, and neither billing:read nor
  // the general write scope passes any changing billing route (the subscription stays as is).
  HttpResponse unknown = call("POST", "/api/api-keys", owner.access_token,
                              R"({"name":"billing writer","scopes":["billing:write"]})");
  EXPECT_EQ(unknown.status, 422) << unknown.body;
  HttpResponse w =
      call("POST", "/api/api-keys", owner.access_token, R"({"name":"writer","scopes":["write"]})");
  ASSERT_EQ(w.status, 201) << w.body;
  std::string writer = str(json_of(w), "key");
  std::vector<std::string> json{"Content-Type: application/json"};
  for (const std::string& k : {key, writer}) {
    for (const char* path :
         {"/api/subscriptions/cancel", "/api/subscriptions/reactivate",
          "/api/subscriptions/upgrade", "/api/subscriptions/downgrade",
          "/api/subscriptions/checkout", "/api/invoices/0190f5a0-0000-7000-8000-000000000000/pay",
          "/api/billing/portal-session"}) {
      HttpResponse r = call("POST", path, k, "{}", json);
      EXPECT_EQ(r.status, 403) << path << " " << r.body;
    }
    EXPECT_EQ(call("GET", "/api/subscriptions/preview?plan_id=pro", k).status, 403);
  }
  EXPECT_EQ(scalar("SELECT plan_id || ':' || status || ':' || cancel_at_period_end "
                   "FROM subscriptions WHERE tenant_id = $1",
                   {owner.tenant_id}),
            "free:active:false");
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

TEST_F(Billing, PlatformStaffManagePlansAndNobodyElse) {
  std::string id = "team" + core::random_hex(2);
  std::string create = R"({"id":")" + id +
                       R"(","name":"Team","monthly_amount":4900,"yearly_amount":49000,)"
                       R"("features":{"webhooks":true},"limits":{"seats":20},"sort_order":5})";
  std::vector<std::string> json{"Content-Type: application/json"};
  const std::string kStaff = staff_->access_token;
  // No credential, a made-up bearer token (the old operator token's shape) and a tampered
  // access token: 401. A tenant's owner, and an owner's API key with every scope: 403.
  EXPECT_EQ(call("POST", "/api/admin/plans", "", create, json).status, 401);
  EXPECT_EQ(call("POST", "/api/admin/plans", "operator-token-0123456789", create, json).status,
            401);
  std::string forged = kStaff;
  forged[forged.size() / 2] = forged[forged.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_EQ(call("POST", "/api/admin/plans", forged, create, json).status, 401);
  EXPECT_EQ(call("GET", "/api/admin/plans", forged).status, 401);
  Account owner = testkit::sign_up(*server_, "Not Operators");
  HttpResponse k = call("POST", "/api/api-keys", owner.access_token,
                        R"({"name":"everything","scopes":["read","write"]})", json);
  ASSERT_EQ(k.status, 201) << k.body;
  std::string key = str(json_of(k), "key");
  for (const std::string& who : {owner.access_token, key}) {
    HttpResponse refused = call("POST", "/api/admin/plans", who, create, json);
    EXPECT_EQ(refused.status, 403) << refused.body;
    EXPECT_EQ(call("GET", "/api/admin/plans", who).status, 403);
    EXPECT_EQ(
        call("PATCH", "/api/admin/plans/free", who, R"({"limits":{"seats":1000}})", json).status,
        403);
    EXPECT_EQ(call("POST", "/api/admin/plans/pro/archive", who).status, 403);
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM plans WHERE id = $1", {id}), "0");
  EXPECT_EQ(scalar("SELECT limits->>'seats' FROM plans WHERE id = 'free'", {}), "3");
  EXPECT_EQ(scalar("SELECT status FROM plans WHERE id = 'pro'", {}), "active");
  HttpResponse made = call("POST", "/api/admin/plans", kStaff, create, json);
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(str(json_of(made), "status"), "active");
  EXPECT_EQ(call("POST", "/api/admin/plans", kStaff, create, json).status, 409);
  // Limits must be non-negative integers.
  HttpResponse bad =
      call("PATCH", "/api/admin/plans/" + id, kStaff, R"({"limits":{"seats":-1}})", json);
  EXPECT_EQ(bad.status, 422) << bad.body;
  HttpResponse changed = call("PATCH", "/api/admin/plans/" + id, kStaff,
                              R"({"monthly_amount":5900,"limits":{"seats":25}})", json);
  ASSERT_EQ(changed.status, 200) << changed.body;
  EXPECT_EQ(json_of(changed).at("monthly_amount").as_int64(), 5900);
  // The meters Stripe bills by usage past the limit: counted meters, positive decimal prices;
  // anything else is refused and changes nothing.
  for (const char* bad : {R"({"metered":{"storage_bytes":{"unit_amount_decimal":"1"}}})",
                          R"({"metered":{"api_calls":{"unit_amount_decimal":"0.000"}}})",
                          R"({"metered":{"api_calls":{"unit_amount_decimal":"1e3"}}})",
                          R"({"metered":{"api_calls":{"unit_amount_decimal":1}}})",
                          R"({"metered":{"api_calls":{}}})", R"({"metered":{"Bad Name":{}}})",
                          R"({"metered":{"api_calls":{"unit_amount_decimal":"1","x":1}}})"}) {
    HttpResponse refused = call("PATCH", "/api/admin/plans/" + id, kStaff, bad, json);
    EXPECT_EQ(refused.status, 422) << bad << " " << refused.body;
  }
  EXPECT_EQ(scalar("SELECT metered::text FROM plans WHERE id = $1", {id}), "{}");
  HttpResponse metered = call("PATCH", "/api/admin/plans/" + id, kStaff,
                              R"({"metered":{"api_calls":{"unit_amount_decimal":"0.05"}}})", json);
  ASSERT_EQ(metered.status, 200) << metered.body;
  EXPECT_EQ(boost::json::serialize(json_of(metered).at("metered")),
            R"({"api_calls":{"unit_amount_decimal":"0.05"}})");
  EXPECT_EQ(
      scalar("SELECT metered->'api_calls'->>'unit_amount_decimal' FROM plans WHERE id = $1", {id}),
      "0.05");
  // Another change keeps it; the owner of a tenant cannot set it.
  ASSERT_EQ(call("PATCH", "/api/admin/plans/" + id, kStaff, R"({"sort_order":6})", json).status,
            200);
  EXPECT_EQ(call("PATCH", "/api/admin/plans/" + id, owner.access_token,
                 R"({"metered":{"api_calls":{"unit_amount_decimal":"9"}}})", json)
                .status,
            403);
  EXPECT_EQ(
      scalar("SELECT metered->'api_calls'->>'unit_amount_decimal' FROM plans WHERE id = $1", {id}),
      "0.05");
  auto listed = [&] {
    std::string body = http("GET", url("/api/plans")).body;
    return body.find("\"" + id + "\"") != std::string::npos;
  };
  EXPECT_TRUE(listed());
  HttpResponse archived = call("POST", "/api/admin/plans/" + id + "/archive", kStaff);
  ASSERT_EQ(archived.status, 200) << archived.body;
  EXPECT_EQ(str(json_of(archived), "status"), "archived");
  EXPECT_FALSE(listed());
  EXPECT_EQ(call("POST", "/api/admin/plans/free/archive", kStaff).status, 409);
  EXPECT_EQ(call("POST", "/api/admin/plans/nope/archive", kStaff).status, 404);
  HttpResponse all = call("GET", "/api/admin/plans", kStaff);
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
  HttpResponse off = call("PATCH", "/api/admin/plans/free", staff_->access_token,
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
  HttpResponse on = call("PATCH", "/api/admin/plans/free", staff_->access_token,
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

// A read route that needs a plan feature: the audit-log export (audit_export: Pro, Enterprise).
TEST_F(Billing, AuditExportNeedsAPlanWithTheFeatureAndShowsTheTenantsOwnEntries) {
  Account a = testkit::sign_up(*server_, "Export A");
  Account b = testkit::sign_up(*server_, "Export B");
  Account member = testkit::sign_up(*server_, "Export Member Home");
  testkit::add_member(*db_, a.tenant_id, member.user_id, "member");
  // A few entries of A's own: keys made and one deleted.
  std::vector<std::string> json{"Content-Type: application/json"};
  // Entries whose user agent (the client's text) holds a comma and quotes, and one that a
  // spreadsheet would run as a formula.
  for (const char* agent : {"Agent \"Q\", v1", "@SUM(1+1)"}) {
    ASSERT_EQ(call("POST", "/api/api-keys", a.access_token, R"({"name":"k","scopes":["read"]})",
                   {"Content-Type: application/json", std::string("User-Agent: ") + agent})
                  .status,
              201);
  }
  // Free: 402 plan_required, whatever the format.
  HttpResponse free = call("GET", "/api/audit-logs/export?format=ndjson", a.access_token);
  EXPECT_EQ(free.status, 402) << free.body;
  EXPECT_EQ(code_of(free), "plan_required");
  EXPECT_EQ(free.header("content-type"), "application/problem+json");
  EXPECT_NE(free.body.find("audit_export"), std::string::npos) << free.body;
  // Pro (as Stripe's events would set it): the export works; the entitlement caches are
  // emptied by the change.
  for (const Account* t : {&a, &b}) testkit::set_plan(*db_, t->tenant_id, "pro");
  HttpResponse r;
  ASSERT_TRUE(eventually(
      [&] {
        r = call("GET", "/api/audit-logs/export?format=ndjson&limit=200", a.access_token);
        return r.status == 200;
      },
      std::chrono::seconds(5)))
      << r.status << " " << r.body;
  EXPECT_EQ(r.header("content-type"), "application/x-ndjson");
  EXPECT_EQ(r.header("x-has-more"), "false");
  // The same entries as the list, in the same order.
  auto ids_of_list = [&](const Account& who) {
    object list = json_of(call("GET", "/api/audit-logs?limit=200", who.access_token));
    std::vector<std::string> ids;
    for (const auto& e : list.at("data").as_array()) ids.push_back(str(e.as_object(), "id"));
    return ids;
  };
  auto ids_of_ndjson = [](const std::string& body) {
    std::vector<std::string> ids;
    std::size_t at = 0;
    while (at < body.size()) {
      std::size_t nl = body.find('\n', at);
      ids.push_back(str(boost::json::parse(body.substr(at, nl - at)).as_object(), "id"));
      at = nl + 1;
    }
    return ids;
  };
  std::vector<std::string> mine = ids_of_ndjson(r.body);
  EXPECT_EQ(mine, ids_of_list(a));
  EXPECT_GE(mine.size(), 3u);  // sign-up's entries and the two keys
  // B's export: B's entries only.
  HttpResponse theirs = call("GET", "/api/audit-logs/export?limit=200", b.access_token);
  ASSERT_EQ(theirs.status, 200) << theirs.body;
  std::vector<std::string> b_ids = ids_of_ndjson(theirs.body);
  EXPECT_EQ(b_ids, ids_of_list(b));
  for (const std::string& id : mine) {
    EXPECT_EQ(theirs.body.find(id), std::string::npos) << id;
  }
  EXPECT_EQ(theirs.body.find("Agent"), std::string::npos);
  // B naming A's tenant: not a member.
  EXPECT_EQ(call("GET", "/api/audit-logs/export", b.access_token, "", {tenant_header(a.tenant_id)})
                .status,
            403);
  // CSV: a header and one row per entry; a cell with a comma is quoted, a formula defused.
  HttpResponse csv = call("GET", "/api/audit-logs/export?format=csv&limit=200", a.access_token);
  ASSERT_EQ(csv.status, 200) << csv.body;
  EXPECT_EQ(csv.header("content-type"), "text/csv; charset=utf-8");
  EXPECT_EQ(csv.body.rfind("id,created_at,actor_type,actor_id,action,", 0), 0u) << csv.body;
  std::size_t rows = 0;
  for (std::size_t at = 0; (at = csv.body.find("\r\n", at)) != std::string::npos; at += 2) ++rows;
  EXPECT_EQ(rows, mine.size() + 1);
  EXPECT_EQ(csv.body.find(",@SUM(1+1)"), std::string::npos) << csv.body;
  EXPECT_NE(csv.body.find(",'@SUM(1+1)"), std::string::npos) << csv.body;
  EXPECT_NE(csv.body.find(R"(,"Agent ""Q"", v1",)"), std::string::npos) << csv.body;
  // Pages as the list does.
  HttpResponse first = call("GET", "/api/audit-logs/export?limit=1", a.access_token);
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.header("x-has-more"), "true");
  EXPECT_EQ(first.header("x-next-starting-after"), mine[0]);
  HttpResponse second =
      call("GET", "/api/audit-logs/export?limit=1&starting_after=" + mine[0], a.access_token);
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(ids_of_ndjson(second.body), std::vector<std::string>{mine[1]});
  // A bad format: 400; a member (no audit-log reader): 403; a key with audit:read reads.
  HttpResponse bad = call("GET", "/api/audit-logs/export?format=xml", a.access_token);
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(bad.header("content-type"), "application/problem+json");
  EXPECT_EQ(
      call("GET", "/api/audit-logs/export", member.access_token, "", {tenant_header(a.tenant_id)})
          .status,
      403);
  HttpResponse k = call("POST", "/api/api-keys", a.access_token,
                        R"({"name":"auditor","scopes":["audit:read"]})", json);
  ASSERT_EQ(k.status, 201);
  EXPECT_EQ(call("GET", "/api/audit-logs/export", str(json_of(k), "key")).status, 200);
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

// A trial HSEA started ends by itself: the scheduled job (every minute, once across the cluster)
// moves a tenant whose trial ended unpaid to the free plan, with a history row, an audit entry,
// an event and a mail to its billing contacts. Time is moved by moving trial_end into the past.
// A trial on a Stripe subscription is Stripe's to end; an open trial stays; tenant B's stays.
TEST(BillingTrial, AnUnpaidTrialEndsOnTheFreePlanByTheScheduledJob) {
  testkit::TestDatabase db;
  testkit::SmtpSink sink;
  testkit::TestServer server(db, {{"HSEA_BILLING_TRIAL_PLAN", "pro"},
                                  {"HSEA_BILLING_TRIAL_DAYS", "14"},
                                  {"HSEA_SMTP_URL", sink.url()},
                                  {"HSEA_MAIL_FROM", "billing@mail.hsea.test"},
                                  {"HSEA_JOB_POLL_MS", "200"}});
  Account a = testkit::sign_up(server, "Ended Co");
  Account b = testkit::sign_up(server, "Still Trying Co");
  Account c = testkit::sign_up(server, "Stripe Trial Co");
  Account billing = testkit::sign_up(server, "Billing Person Home");
  testkit::add_member(db, a.tenant_id, billing.user_id, "billing");
  auto state = [&](const Account& who) {
    return testkit::sql(db.admin_url(),
                        "SELECT plan_id || ':' || status FROM subscriptions WHERE tenant_id = $1",
                        {who.tenant_id})[0][0];
  };
  ASSERT_EQ(state(a), "pro:trialing");
  // A's and C's trials end now; C's is on a Stripe subscription (Stripe ends it).
  testkit::sql(db.admin_url(),
               "UPDATE subscriptions SET trial_end = now() - interval '1 minute' "
               "WHERE tenant_id = ANY($1::uuid[])",
               {"{" + a.tenant_id + "," + c.tenant_id + "}"});
  testkit::sql(db.admin_url(),
               "UPDATE subscriptions SET stripe_customer_id = 'cus_trial_c', "
               "stripe_subscription_id = 'sub_trial_c' WHERE tenant_id = $1",
               {c.tenant_id});
  ASSERT_TRUE(eventually([&] { return state(a) == "free:active"; }, std::chrono::seconds(90)))
      << state(a) << "\n"
      << server.output();
  HttpResponse r =
      http("GET", server.url("/api/subscriptions/current"), "", {bearer(a.access_token)});
  ASSERT_EQ(r.status, 200) << r.body;
  object s = json_of(r);
  EXPECT_EQ(str(s, "plan_id"), "free");
  EXPECT_EQ(str(s, "status"), "active");
  EXPECT_FALSE(s.at("trial_end").is_null());  // when the trial ended stays on record
  EXPECT_TRUE(s.at("current_period_end").is_null());
  EXPECT_FALSE(s.at("plan").at("features").at("sso").as_bool());
  auto count = [&](const std::string& statement, const Account& who) {
    return testkit::sql(db.admin_url(), statement, {who.tenant_id})[0][0];
  };
  // History: one row for the trial's end (pro, trialing -> free, active).
  const std::string ended_rows =
      "SELECT count(*) FROM subscription_history WHERE tenant_id = $1 AND plan_id = 'free' AND "
      "status = 'active' AND previous_plan_id = 'pro' AND previous_status = 'trialing'";
  EXPECT_EQ(count(ended_rows, a), "1");
  EXPECT_EQ(count("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND "
                  "action = 'subscription.trial_ended' AND actor_type = 'job'",
                  a),
            "1");
  EXPECT_EQ(count("SELECT count(*) FROM events WHERE tenant_id = $1 AND "
                  "type = 'subscription.trial_ended'",
                  a),
            "1");
  // Mailed to the owner and the billing member.
  auto subjects = [&](const Account& who) {
    std::string all;
    for (const auto& m : sink.accepted_for(who.email)) all += str(m, "subject") + "\n";
    return all;
  };
  for (const Account* who : {&a, &billing}) {
    EXPECT_TRUE(eventually([&] {
      return sink.accepted_for(who->email, "The Pro trial of Ended Co ").size() == 1;
    })) << subjects(*who);
  }
  auto ended_mails = sink.accepted_for(a.email, "The Pro trial of Ended Co ");
  ASSERT_EQ(ended_mails.size(), 1u);
  auto mail = ended_mails[0];
  EXPECT_NE(str(mail, "text").find("/account/billing"), std::string::npos) << str(mail, "text");
  // The tenant reads its own events (the same for its webhooks); B's API shows none of A's.
  HttpResponse events = http("GET", server.url("/api/events?type=subscription.trial_ended"), "",
                             {bearer(a.access_token)});
  ASSERT_EQ(events.status, 200) << events.body;
  EXPECT_EQ(json_of(events).at("data").as_array().size(), 1u);
  HttpResponse theirs = http("GET", server.url("/api/events?type=subscription.trial_ended"), "",
                             {bearer(b.access_token)});
  ASSERT_EQ(theirs.status, 200);
  EXPECT_TRUE(json_of(theirs).at("data").as_array().empty());
  // B's open trial and C's Stripe trial are untouched by the run that ended A's.
  EXPECT_EQ(state(b), "pro:trialing");
  EXPECT_EQ(state(c), "pro:trialing");
  EXPECT_EQ(sink.accepted_for(b.email, "The Pro trial").size(), 0u);
  EXPECT_EQ(count(ended_rows, c), "0");
  EXPECT_EQ(count(ended_rows, b), "0");
}

}  // namespace
}  // namespace hsea
