// Billing against the local Stripe emulator (tests/stripe-emulator), end to end through the real
// `hsea serve`: `hsea billing sync-plans`, checkout -> paid -> active, the proration preview and
// an upgrade, a downgrade at the period's end, cancel and reactivate, webhooks late, twice and
// out of order, the seat rule, and two tenants.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <functional>
#include <set>
#include <thread>

#include "core/ids.hpp"
#include "testkit/stripe_emulator.hpp"
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

// The server's HSEA_PUBLIC_URL (TestServer's default): redirect URLs may lead back there.
const std::string kPublic = "http://127.0.0.1:8080";

class BillingStripe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    stripe_ = new testkit::StripeEmulator();
    std::map<std::string, std::string> env = stripe_->hsea_env();
    env["HSEA_STRIPE_MAX_RETRIES"] = "2";
    server_ = new testkit::TestServer(*db_, env);
    stripe_->set_webhook_url(server_->url("/api/webhooks/stripe"));
    env["HSEA_DATABASE_URL"] = db_->app_url();
    env["HSEA_DATABASE_ADMIN_URL"] = db_->admin_url();
    env_ = new std::map<std::string, std::string>(env);
    testkit::RunResult sync = testkit::run_hsea({"billing", "sync-plans"}, env);
    ASSERT_EQ(sync.exit_code, 0) << sync.output;
  }
  static void TearDownTestSuite() {
    delete server_;
    delete stripe_;
    delete db_;
    delete env_;
  }
  static std::string url(const std::string& path) { return server_->url(path); }
  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const std::string& body = "") {
    std::vector<std::string> headers{bearer(token)};
    if (!body.empty()) headers.emplace_back("Content-Type: application/json");
    return http(method, url(path), body, headers);
  }
  static object current(const Account& a) {
    HttpResponse r = call("GET", "/api/subscriptions/current", a.access_token);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json_of(r) : object{};
  }
  static std::string scalar(const std::string& statement, const std::vector<std::string>& p) {
    auto rows = sql(db_->admin_url(), statement, p);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }
  // A tenant on a paid plan: checkout, the customer pays, Stripe's webhooks make it active.
  static Account subscribed(const std::string& org, const std::string& plan = "pro") {
    Account a = testkit::sign_up(*server_, org);
    stripe_->subscribe(*server_, a, plan);
    EXPECT_TRUE(eventually([&] {
      object s = current(a);
      return str(s, "plan_id") == plan && str(s, "status") == "active";
    })) << boost::json::serialize(current(a));
    return a;
  }
  static std::size_t history(const Account& a) {
    return std::stoul(
        scalar("SELECT count(*) FROM subscription_history WHERE tenant_id = $1", {a.tenant_id}));
  }

  static testkit::TestDatabase* db_;
  static testkit::StripeEmulator* stripe_;
  static testkit::TestServer* server_;
  static std::map<std::string, std::string>* env_;
};
testkit::TestDatabase* BillingStripe::db_ = nullptr;
testkit::StripeEmulator* BillingStripe::stripe_ = nullptr;
testkit::TestServer* BillingStripe::server_ = nullptr;
std::map<std::string, std::string>* BillingStripe::env_ = nullptr;

TEST_F(BillingStripe, SyncPlansStoresStripeIdsAndCreatesNothingTwice) {
  EXPECT_EQ(scalar("SELECT count(*) FROM plans WHERE monthly_amount > 0 AND "
                   "stripe_product_id IS NOT NULL AND stripe_monthly_price_id IS NOT NULL AND "
                   "stripe_yearly_price_id IS NOT NULL",
                   {}),
            "3");
  EXPECT_EQ(
      scalar("SELECT count(*) FROM plans WHERE id = 'free' AND stripe_product_id IS NULL", {}),
      "1");
  std::string price = scalar("SELECT stripe_monthly_price_id FROM plans WHERE id = 'pro'", {});
  boost::json::value p = stripe_->api("GET", "/v1/prices/" + price);
  EXPECT_EQ(p.at("unit_amount").as_int64(), 9900);
  EXPECT_EQ(p.at("recurring").at("interval").as_string(), "month");
  auto count_prices = [] {
    return stripe_->api("GET", "/v1/prices?limit=100").at("data").as_array().size();
  };
  std::size_t before = count_prices();
  testkit::RunResult again = testkit::run_hsea({"billing", "sync-plans"}, *env_);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(count_prices(), before);
  EXPECT_EQ(scalar("SELECT stripe_monthly_price_id FROM plans WHERE id = 'pro'", {}), price);
}

TEST_F(BillingStripe, CheckoutThenPaymentMakesTheSubscriptionActive) {
  Account a = testkit::sign_up(*server_, "Checkout Co");
  std::string body = R"({"plan_id":"starter","interval":"year","success_url":")" + kPublic +
                     "/billing/done" + R"(","cancel_url":")" + kPublic + "/billing/cancel" +
                     R"("})";
  // Before any paid subscription, the preview is the plan's price.
  HttpResponse price =
      call("GET", "/api/subscriptions/preview?plan_id=starter&interval=year", a.access_token);
  ASSERT_EQ(price.status, 200) << price.body;
  EXPECT_EQ(json_of(price).at("amount_due").as_int64(), 29000);
  EXPECT_EQ(json_of(price).at("proration_amount").as_int64(), 0);
  EXPECT_EQ(call("GET", "/api/subscriptions/preview?plan_id=nope", a.access_token).status, 422);
  // A redirect elsewhere than this server or the tenant's allowed origins is refused.
  HttpResponse evil = call("POST", "/api/subscriptions/checkout", a.access_token,
                           R"({"plan_id":"starter","success_url":"https://evil.example/x",)"
                           R"("cancel_url":")" +
                               kPublic + "/x" + R"("})");
  EXPECT_EQ(evil.status, 422) << evil.body;
  EXPECT_NE(evil.body.find("/success_url"), std::string::npos);
  // The tenant's own site, once listed among its allowed origins, is a valid target.
  std::string own = R"({"plan_id":"starter","success_url":"https://app.checkout.example/done",)"
                    R"("cancel_url":"https://app.checkout.example/back"})";
  EXPECT_EQ(call("POST", "/api/subscriptions/checkout", a.access_token, own).status, 422);
  ASSERT_EQ(call("PATCH", "/api/tenant/settings", a.access_token,
                 R"({"allowed_origins":["https://app.checkout.example"]})")
                .status,
            200);
  HttpResponse listed = call("POST", "/api/subscriptions/checkout", a.access_token, own);
  EXPECT_EQ(listed.status, 201) << listed.body;
  HttpResponse r = call("POST", "/api/subscriptions/checkout", a.access_token, body);
  ASSERT_EQ(r.status, 201) << r.body;
  std::string checkout_url = str(json_of(r), "checkout_url");
  EXPECT_FALSE(checkout_url.empty());
  // Not paid yet: still free.
  object before = current(a);
  EXPECT_EQ(str(before, "plan_id"), "free");
  std::string customer = str(before, "stripe_customer_id");
  EXPECT_TRUE(customer.starts_with("cus_")) << customer;

  stripe_->complete_checkout(checkout_url);
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  // The free plan is "active" too: wait for the paid plan itself.
  ASSERT_TRUE(eventually([&] { return str(current(a), "plan_id") == "starter"; }));
  object s = current(a);
  EXPECT_EQ(str(s, "status"), "active");
  EXPECT_EQ(str(s, "interval"), "year");
  EXPECT_TRUE(str(s, "stripe_subscription_id").starts_with("sub_"));
  EXPECT_FALSE(s.at("current_period_end").is_null());
  EXPECT_EQ(str(s, "stripe_customer_id"), customer);  // created once
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND "
                   "actor_type = 'stripe_webhook' AND action LIKE 'subscription.%'",
                   {a.tenant_id}),
            "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE tenant_id = $1 AND "
                   "type = 'subscription.created' AND data->>'plan_id' = 'starter'",
                   {a.tenant_id}),
            "1");
  // A second checkout while subscribed is refused.
  EXPECT_EQ(call("POST", "/api/subscriptions/checkout", a.access_token, body).status, 409);
  // Every POST HSEA sent Stripe carried an Idempotency-Key and the pinned version.
  for (const auto& req : stripe_->requests()) {
    const object& o = req.as_object();
    if (str(o, "method") == "POST") {
      EXPECT_FALSE(str(o, "idempotency_key").empty()) << str(o, "path");
    }
    EXPECT_EQ(str(o, "stripe_version"), "2024-06-20") << str(o, "path");
  }
}

TEST_F(BillingStripe, PreviewShowsTheProrationThenUpgradeTakesEffectNow) {
  Account a = subscribed("Upgrade Co", "starter");
  HttpResponse p =
      call("GET", "/api/subscriptions/preview?plan_id=pro&interval=month", a.access_token);
  ASSERT_EQ(p.status, 200) << p.body;
  object preview = json_of(p);
  // Starter 29.00 -> Pro 99.00 almost at the period's start: close to 70.00 due now.
  std::int64_t proration = preview.at("proration_amount").as_int64();
  EXPECT_GT(proration, 6500) << p.body;
  EXPECT_LE(proration, 7000) << p.body;
  EXPECT_EQ(preview.at("amount_due").as_int64(), proration) << p.body;
  std::size_t rows = history(a);
  HttpResponse up =
      call("POST", "/api/subscriptions/upgrade", a.access_token, R"({"plan_id":"pro"})");
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(str(json_of(up), "plan_id"), "pro");
  EXPECT_EQ(history(a), rows + 1);
  // Stripe's webhooks about the same change add nothing.
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(history(a), rows + 1);
  EXPECT_EQ(str(current(a), "plan_id"), "pro");
  // Not an upgrade: refused, nothing changes.
  HttpResponse down =
      call("POST", "/api/subscriptions/upgrade", a.access_token, R"({"plan_id":"starter"})");
  EXPECT_EQ(down.status, 422) << down.body;
}

TEST_F(BillingStripe, DowngradeWaitsForThePeriodsEnd) {
  Account a = subscribed("Downgrade Co", "pro");
  HttpResponse r = call("POST", "/api/subscriptions/downgrade", a.access_token,
                        R"({"plan_id":"starter","when":"period_end"})");
  ASSERT_EQ(r.status, 200) << r.body;
  object s = json_of(r);
  EXPECT_EQ(str(s, "plan_id"), "pro");  // paid until the period ends
  EXPECT_EQ(str(s, "pending_plan_id"), "starter");
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  EXPECT_EQ(str(current(a), "plan_id"), "pro");
  stripe_->advance_days(32);
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  EXPECT_TRUE(eventually([&] {
    object now = current(a);
    return str(now, "plan_id") == "starter" && now.at("pending_plan_id").is_null();
  })) << boost::json::serialize(current(a));
}

TEST_F(BillingStripe, DowngradeBelowTheSeatsInUseIsRefusedSayingWhy) {
  Account a = subscribed("Seats Co", "starter");
  for (int i = 0; i < 3; ++i) {
    Account m = testkit::sign_up(*server_, "Seat " + std::to_string(i));
    testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  }
  HttpResponse r = call("POST", "/api/subscriptions/downgrade", a.access_token,
                        R"({"plan_id":"free","when":"now"})");
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(code_of(r), "downgrade_blocked");
  EXPECT_NE(r.body.find("4 members"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("allows 3"), std::string::npos) << r.body;
  EXPECT_EQ(str(current(a), "plan_id"), "starter");
}

TEST_F(BillingStripe, CancelAtPeriodEndThenReactivateThenCancelNow) {
  Account a = subscribed("Cancel Co", "starter");
  HttpResponse c =
      call("POST", "/api/subscriptions/cancel", a.access_token, R"({"at_period_end":true})");
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_TRUE(json_of(c).at("cancel_at_period_end").as_bool());
  EXPECT_EQ(str(json_of(c), "status"), "active");
  HttpResponse again = call("POST", "/api/subscriptions/reactivate", a.access_token);
  ASSERT_EQ(again.status, 200) << again.body;
  EXPECT_FALSE(json_of(again).at("cancel_at_period_end").as_bool());
  EXPECT_EQ(call("POST", "/api/subscriptions/reactivate", a.access_token).status, 409);
  // Canceled now, and Stripe's news of it held back until after a new subscription started.
  std::string old_subscription = str(current(a), "stripe_subscription_id");
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  stripe_->hold_webhooks();
  HttpResponse now =
      call("POST", "/api/subscriptions/cancel", a.access_token, R"({"at_period_end":false})");
  ASSERT_EQ(now.status, 200) << now.body;
  EXPECT_EQ(str(json_of(now), "status"), "canceled");
  EXPECT_FALSE(json_of(now).at("canceled_at").is_null());
  for (const char* action : {"subscription.canceled", "subscription.reactivated"}) {
    EXPECT_NE(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND action = $2",
                     {a.tenant_id, action}),
              "0")
        << action;
  }
  // After the cancellation checkout is open again.
  HttpResponse co = call("POST", "/api/subscriptions/checkout", a.access_token,
                         R"({"plan_id":"pro","success_url":")" + kPublic + "/ok" +
                             R"(","cancel_url":")" + kPublic + "/no" + R"("})");
  ASSERT_EQ(co.status, 201) << co.body;
  stripe_->complete_checkout(str(json_of(co), "checkout_url"));
  // Everything arrives now, oldest last: the old subscription's deletion must not end the new
  // one.
  stripe_->release_webhooks("reverse", false);
  ASSERT_TRUE(stripe_->wait_webhooks_idle(std::chrono::seconds(40)));
  ASSERT_TRUE(eventually([&] { return str(current(a), "status") == "active"; }));
  EXPECT_TRUE(eventually([&] {
    return scalar(
               "SELECT count(*) FROM stripe_events WHERE type = "
               "'customer.subscription.deleted' AND payload->'data'->'object'->>'id' = $1 "
               "AND processed_at IS NOT NULL",
               {old_subscription}) == "1";
  }));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  object renewed = current(a);
  EXPECT_EQ(str(renewed, "status"), "active");
  EXPECT_EQ(str(renewed, "plan_id"), "pro");
  EXPECT_NE(str(renewed, "stripe_subscription_id"), old_subscription);
}

TEST_F(BillingStripe, WebhooksTwiceAndOutOfOrderChangeNothingTwice) {
  Account a = testkit::sign_up(*server_, "Reorder Co");
  HttpResponse r = call("POST", "/api/subscriptions/checkout", a.access_token,
                        R"({"plan_id":"pro","success_url":")" + kPublic + "/ok" +
                            R"(","cancel_url":")" + kPublic + "/no" + R"("})");
  ASSERT_EQ(r.status, 201) << r.body;
  stripe_->hold_webhooks();
  stripe_->complete_checkout(str(json_of(r), "checkout_url"));
  EXPECT_EQ(str(current(a), "plan_id"), "free");  // nothing arrived yet
  stripe_->release_webhooks("reverse", true);
  ASSERT_TRUE(stripe_->wait_webhooks_idle(std::chrono::seconds(40)));
  ASSERT_TRUE(eventually([&] { return str(current(a), "plan_id") == "pro"; }));
  EXPECT_EQ(str(current(a), "plan_id"), "pro");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // One change from free to an active Pro: three history rows (the start, the Stripe customer,
  // the change), one audit entry and one event, however often and in whatever order Stripe
  // told.
  EXPECT_EQ(history(a), 3u);
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND "
                   "actor_type = 'stripe_webhook' AND action LIKE 'subscription.%'",
                   {a.tenant_id}),
            "1");
  EXPECT_EQ(scalar("SELECT count(*) FROM stripe_events e WHERE e.payload->'data'->'object'->>"
                   "'customer' = (SELECT stripe_customer_id FROM subscriptions WHERE "
                   "tenant_id = $1) AND processed_at IS NULL",
                   {a.tenant_id}),
            "0");
  // A late duplicate of an event already processed: answered, not processed again.
  std::string any = scalar(
      "SELECT id FROM stripe_events WHERE type = "
      "'customer.subscription.created' ORDER BY received_at DESC LIMIT 1",
      {});
  stripe_->control("POST", "/events/" + any + "/resend", "{}");
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(history(a), 3u);
  // A bad signature and a stale timestamp are refused (400) by HSEA: the emulator gives up.
  stripe_->control("POST", "/events/" + any + "/resend", R"({"secret":"whsec_not_ours"})");
  stripe_->control("POST", "/events/" + any + "/resend", R"({"timestamp_offset":-600})");
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  int refused = 0;
  for (const auto& d : stripe_->deliveries()) {
    if (d.as_object().at("status").is_int64() && d.as_object().at("status").as_int64() == 400) {
      ++refused;
    }
  }
  EXPECT_GE(refused, 2);
}

TEST_F(BillingStripe, TenantBNeitherSeesNorChangesTenantAsSubscription) {
  Account a = subscribed("Isolated A", "starter");
  Account b = testkit::sign_up(*server_, "Isolated B");
  std::vector<std::string> as_a{bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id,
                                "Content-Type: application/json"};
  for (auto [method, path, body] :
       {std::tuple{"GET", "/api/subscriptions/current", ""},
        std::tuple{"GET", "/api/subscriptions/preview?plan_id=pro", ""},
        std::tuple{"POST", "/api/subscriptions/cancel", R"({"at_period_end":false})"},
        std::tuple{"POST", "/api/subscriptions/upgrade", R"({"plan_id":"pro"})"}}) {
    HttpResponse r = http(method, url(path), body, as_a);
    EXPECT_EQ(r.status, 403) << path << " " << r.body;
  }
  object mine = current(b);
  EXPECT_EQ(str(mine, "plan_id"), "free");
  EXPECT_TRUE(mine.at("stripe_subscription_id").is_null());
  object theirs = current(a);
  EXPECT_EQ(str(theirs, "plan_id"), "starter");
  EXPECT_EQ(str(theirs, "status"), "active");
}

}  // namespace
}  // namespace hsea

namespace hsea {
namespace {

TEST_F(BillingStripe, StripeFailuresAreRetriedWithTheSameKeyUnlessStripeSaysNot) {
  auto calls = [](const std::string& method, const std::string& path) {
    std::vector<object> out;
    for (const auto& r : stripe_->requests()) {
      const object& o = r.as_object();
      if (str(o, "method") == method && str(o, "path") == path) out.push_back(o);
    }
    return out;
  };
  std::string body = R"({"plan_id":"pro","success_url":")" + kPublic + R"(/ok","cancel_url":")" +
                     kPublic + R"(/no"})";
  // Two 500s, then Stripe answers: the customer is created once, with one key on every try.
  stripe_->control("POST", "/faults",
                   R"({"path_prefix":"/v1/customers","method":"POST","status":500,"count":2})");
  Account a = testkit::sign_up(*server_, "Retry Co");
  HttpResponse r = call("POST", "/api/subscriptions/checkout", a.access_token, body);
  EXPECT_EQ(r.status, 201) << r.body;
  std::vector<object> tries = calls("POST", "/v1/customers");
  ASSERT_EQ(tries.size(), 3u);
  std::set<std::string> keys;
  for (const object& t : tries) keys.insert(str(t, "idempotency_key"));
  EXPECT_EQ(keys.size(), 1u);
  EXPECT_EQ(tries[2].at("status").as_int64(), 200);
  // A 429 is retried too.
  stripe_->control("POST", "/faults",
                   R"({"path_prefix":"/v1/checkout/sessions","status":429,"count":1})");
  Account b = testkit::sign_up(*server_, "Rate Co");
  HttpResponse limited = call("POST", "/api/subscriptions/checkout", b.access_token, body);
  EXPECT_EQ(limited.status, 201) << limited.body;
  // Stripe-Should-Retry: false is obeyed: one try, and the caller learns Stripe is unavailable.
  std::size_t before = calls("POST", "/v1/checkout/sessions").size();
  stripe_->control("POST", "/faults",
                   R"({"path_prefix":"/v1/checkout/sessions","status":503,"count":1,)"
                   R"("should_retry":false})");
  Account c = testkit::sign_up(*server_, "No Retry Co");
  HttpResponse refused = call("POST", "/api/subscriptions/checkout", c.access_token, body);
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_EQ(code_of(refused), "service_unavailable");
  EXPECT_EQ(calls("POST", "/v1/checkout/sessions").size(), before + 1);
}

TEST_F(BillingStripe, OperatorCommandsManagePlans) {
  auto run = [](std::vector<std::string> args) { return testkit::run_hsea(args, *env_); };
  testkit::RunResult made =
      run({"plans", "create", "team", "--name", "Team", "--monthly-amount", "4900",
           "--yearly-amount", "49000", "--limits", R"({"seats":20,"api_calls":50000})",
           "--features", R"({"webhooks":true})", "--sort-order", "1"});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  EXPECT_EQ(run({"plans", "create", "team", "--name", "Team", "--monthly-amount", "1",
                 "--yearly-amount", "1"})
                .exit_code,
            1);
  EXPECT_EQ(run({"plans", "update", "team", "--limits", R"({"seats":-1})"}).exit_code, 1);
  // The meters Stripe bills by usage: a counted meter and a positive decimal only.
  for (const char* bad :
       {R"({"seats":{"unit_amount_decimal":"1"}})", R"({"api_calls":{"unit_amount_decimal":"0"}})",
        R"({"api_calls":{"unit_amount_decimal":"-1"}})",
        R"({"api_calls":{"unit_amount_decimal":0.5}})", R"({"API":{}})"}) {
    testkit::RunResult refused = run({"plans", "update", "team", "--metered", bad});
    EXPECT_EQ(refused.exit_code, 1) << bad << refused.output;
  }
  EXPECT_EQ(scalar("SELECT metered::text FROM plans WHERE id = 'team'", {}), "{}");
  testkit::RunResult metered = run(
      {"plans", "update", "team", "--metered", R"({"api_calls":{"unit_amount_decimal":"0.25"}})"});
  ASSERT_EQ(metered.exit_code, 0) << metered.output;
  testkit::RunResult changed = run({"plans", "update", "team", "--monthly-amount", "5900"});
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_EQ(scalar("SELECT monthly_amount || ' ' || (limits->>'seats') FROM plans "
                   "WHERE id = 'team'",
                   {}),
            "5900 20");
  testkit::RunResult sync = run({"billing", "sync-plans"});
  ASSERT_EQ(sync.exit_code, 0) << sync.output;
  std::string price = scalar("SELECT stripe_monthly_price_id FROM plans WHERE id = 'team'", {});
  EXPECT_EQ(stripe_->api("GET", "/v1/prices/" + price).at("unit_amount").as_int64(), 5900);
  // sync-plans made the metered price the operator set: past the 50000 included, 0.25 each.
  std::string usage_price = scalar(
      "SELECT stripe_metered_price_ids->'api_calls'->>'month' FROM plans WHERE id = 'team'", {});
  ASSERT_FALSE(usage_price.empty());
  boost::json::value tiers = stripe_->api("GET", "/v1/prices/" + usage_price).at("tiers");
  EXPECT_EQ(tiers.at(0).at("up_to").as_int64(), 50000);
  EXPECT_EQ(tiers.at(1).at("unit_amount_decimal").as_string(), "0.25");
  // A new amount is a new Stripe price (prices are immutable).
  ASSERT_EQ(run({"plans", "update", "team", "--monthly-amount", "6900"}).exit_code, 0);
  ASSERT_EQ(run({"billing", "sync-plans"}).exit_code, 0);
  std::string repriced = scalar("SELECT stripe_monthly_price_id FROM plans WHERE id = 'team'", {});
  EXPECT_NE(repriced, price);
  EXPECT_EQ(stripe_->api("GET", "/v1/prices/" + repriced).at("unit_amount").as_int64(), 6900);
  ASSERT_EQ(run({"plans", "archive", "team"}).exit_code, 0);
  EXPECT_EQ(run({"plans", "archive", "free"}).exit_code, 1);
  testkit::RunResult list = run({"plans", "list"});
  ASSERT_EQ(list.exit_code, 0);
  EXPECT_NE(list.output.find("team"), std::string::npos);
  EXPECT_NE(list.output.find("archived"), std::string::npos);
  EXPECT_EQ(http("GET", url("/api/plans")).body.find("\"team\""), std::string::npos);
}

}  // namespace
}  // namespace hsea
