// Metered billing (HSEA-026) through the real server and the Stripe emulator: `hsea billing
// sync-plans` makes the meter and the tiered metered prices, the periodic report sends each
// tenant's counted api_calls to its own Stripe customer as meter events, a failed send is resent
// with the same identifier and counted once, and without Stripe nothing is reported. A metered
// meter past its included amount warns but is never refused.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <functional>
#include <memory>
#include <regex>
#include <set>
#include <thread>

#include <unistd.h>

#include "testkit/stripe_emulator.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using namespace std::chrono_literals;
using boost::json::object;
using testkit::Account;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::sql;
using testkit::str;

const std::string kPublic = "http://127.0.0.1:8080";

using testkit::eventually;

using testkit::call;

std::string scalar(const testkit::TestDatabase& db, const std::string& statement,
                   const std::vector<std::string>& params = {}) {
  auto rows = sql(db.admin_url(), statement, params);
  return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
}

class MeteringStripe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    stripe_ = new testkit::StripeEmulator();
    std::map<std::string, std::string> env = stripe_->hsea_env();
    env["HSEA_STRIPE_MAX_RETRIES"] = "0";  // each report run makes one attempt
    env["HSEA_USAGE_REPORT_SECONDS"] = "1";
    env["HSEA_USAGE_REPORT_SETTLE_SECONDS"] = "1";
    env["HSEA_METERING_FLUSH_SECONDS"] = "1";
    server_ = new testkit::TestServer(*db_, env);
    stripe_->set_webhook_url(server_->url("/api/webhooks/stripe"));
    env["HSEA_DATABASE_URL"] = db_->app_url();
    env["HSEA_DATABASE_ADMIN_URL"] = db_->admin_url();
    testkit::RunResult sync = testkit::run_hsea({"billing", "sync-plans"}, env);
    ASSERT_EQ(sync.exit_code, 0) << sync.output;
    testkit::RunResult again = testkit::run_hsea({"billing", "sync-plans"}, env);
    ASSERT_EQ(again.exit_code, 0) << again.output;
  }
  static void TearDownTestSuite() {
    delete server_;
    delete stripe_;
    delete db_;
  }

  static Account subscribed(const std::string& org) {
    Account a = testkit::sign_up(*server_, org);
    HttpResponse r = call(*server_, "POST", "/api/subscriptions/checkout", a.access_token,
                          R"({"plan_id":"pro","interval":"month","success_url":")" + kPublic +
                              R"(/done","cancel_url":")" + kPublic + R"(/back"})");
    EXPECT_EQ(r.status, 201) << r.body;
    stripe_->complete_checkout(str(json_of(r), "checkout_url"));
    EXPECT_TRUE(stripe_->wait_webhooks_idle());
    EXPECT_TRUE(eventually([&] {
      return scalar(*db_,
                    "SELECT status FROM subscriptions WHERE tenant_id = $1 AND "
                    "stripe_subscription_id IS NOT NULL",
                    {a.tenant_id}) == "active";
    }));
    return a;
  }
  static std::string customer_of(const Account& a) {
    return scalar(*db_, "SELECT stripe_customer_id FROM subscriptions WHERE tenant_id = $1",
                  {a.tenant_id});
  }
  // What Stripe's meter summed for the tenant's customer, over all time.
  static long stripe_total(const Account& a) {
    std::string meter =
        scalar(*db_, "SELECT stripe_meter_id FROM stripe_meters WHERE meter = 'api_calls'");
    long now = static_cast<long>(std::time(nullptr));
    boost::json::value v = stripe_->api(
        "GET", "/v1/billing/meters/" + meter + "/event_summaries?customer=" + customer_of(a) +
                   "&start_time=0&end_time=" + std::to_string(now + 86400));
    const auto& data = v.at("data").as_array();
    return data.empty() ? 0 : static_cast<long>(data[0].at("aggregated_value").as_int64());
  }
  // HSEA's counted api_calls of the tenant since its subscription began, up to the report mark.
  static long counted(const Account& a) {
    return std::stol(scalar(*db_,
                            "SELECT COALESCE(sum(e.quantity), 0) FROM usage_events e, "
                            "usage_stripe_reports r, subscriptions s "
                            "WHERE e.tenant_id = $1 AND r.tenant_id = $1 AND s.tenant_id = $1 "
                            "AND e.meter = 'api_calls' AND r.meter = 'api_calls' "
                            "AND e.recorded_at >= s.current_period_start "
                            "AND e.recorded_at < r.reported_until",
                            {a.tenant_id}));
  }
  static long reported_total(const Account& a) {
    std::string v = scalar(*db_,
                           "SELECT reported_total FROM usage_stripe_reports WHERE tenant_id = $1 "
                           "AND meter = 'api_calls' AND pending_identifier IS NULL",
                           {a.tenant_id});
    return v.empty() ? -1 : std::stol(v);
  }
  // Every usage event of the tenant recorded so far lies before the report mark.
  static bool all_reported(const Account& a) {
    return scalar(*db_,
                  "SELECT count(*) FROM usage_events e, usage_stripe_reports r WHERE "
                  "e.tenant_id = $1 AND r.tenant_id = $1 AND e.meter = 'api_calls' AND "
                  "r.meter = 'api_calls' AND r.pending_identifier IS NULL AND "
                  "e.recorded_at >= r.reported_until",
                  {a.tenant_id}) == "0" &&
           reported_total(a) > 0;
  }
  static std::vector<object> meter_event_requests() {
    std::vector<object> out;
    for (const auto& r : stripe_->requests()) {
      const object& o = r.as_object();
      if (str(o, "method") == "POST" && str(o, "path") == "/v1/billing/meter_events") {
        out.push_back(o);
      }
    }
    return out;
  }

  static testkit::TestDatabase* db_;
  static testkit::StripeEmulator* stripe_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* MeteringStripe::db_ = nullptr;
testkit::StripeEmulator* MeteringStripe::stripe_ = nullptr;
testkit::TestServer* MeteringStripe::server_ = nullptr;

TEST_F(MeteringStripe, SyncPlansMakesOneMeterAndTieredMeteredPrices) {
  EXPECT_EQ(scalar(*db_, "SELECT event_name FROM stripe_meters WHERE meter = 'api_calls'"),
            "hsea_api_calls");
  boost::json::value meters = stripe_->api("GET", "/v1/billing/meters?limit=100");
  EXPECT_EQ(meters.at("data").as_array().size(), 1u) << "the second sync made nothing twice";
  std::string price = scalar(
      *db_, "SELECT stripe_metered_price_ids->'api_calls'->>'month' FROM plans WHERE id = 'pro'");
  ASSERT_FALSE(price.empty());
  boost::json::value p = stripe_->api("GET", "/v1/prices/" + price);
  EXPECT_EQ(p.at("recurring").at("usage_type").as_string(), "metered");
  EXPECT_EQ(p.at("billing_scheme").as_string(), "tiered");
  EXPECT_EQ(p.at("tiers").at(0).at("up_to").as_int64(), 1000000) << "pro includes 1M calls";
  EXPECT_EQ(p.at("tiers").at(1).at("unit_amount_decimal").as_string(), "0.1");
  EXPECT_EQ(scalar(*db_,
                   "SELECT count(*) FROM plans WHERE stripe_metered_price_ids ? 'api_calls' AND "
                   "id IN ('pro', 'enterprise')"),
            "2");
  EXPECT_EQ(scalar(*db_,
                   "SELECT count(*) FROM plans WHERE stripe_metered_price_ids <> '{}' AND "
                   "id IN ('free', 'starter')"),
            "0");
}

TEST_F(MeteringStripe, CountedUsageReachesEachTenantsOwnCustomerOnce) {
  Account a = subscribed("Meter A");
  Account b = subscribed("Meter B");
  for (int i = 0; i < 7; ++i)
    ASSERT_EQ(call(*server_, "GET", "/api/tenant", a.access_token).status, 200);
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(call(*server_, "GET", "/api/tenant", b.access_token).status, 200);
  std::this_thread::sleep_for(2500ms);  // flushed as usage events
  ASSERT_TRUE(eventually([&] { return all_reported(a) && all_reported(b); }, 60s))
      << scalar(*db_, "SELECT string_agg(row_to_json(r)::text, ' ') FROM usage_stripe_reports r");
  long ca = counted(a), cb = counted(b);
  EXPECT_GE(ca, 7);
  EXPECT_GE(cb, 3);
  EXPECT_EQ(reported_total(a), ca);
  EXPECT_EQ(reported_total(b), cb);
  EXPECT_EQ(stripe_total(a), ca) << "Stripe's summary equals HSEA's counted usage";
  EXPECT_EQ(stripe_total(b), cb);
  // Each report names its own tenant's customer; identifiers are never reused.
  std::set<std::string> identifiers;
  for (const object& r : meter_event_requests()) {
    if (r.at("status").as_int64() != 200) continue;
    const object& params = r.at("params").as_object();
    std::string identifier = str(params, "identifier");
    EXPECT_TRUE(identifiers.insert(identifier).second) << identifier;
    std::string customer = str(params.at("payload").as_object(), "stripe_customer_id");
    if (identifier.find(a.tenant_id) != std::string::npos) {
      EXPECT_EQ(customer, customer_of(a));
    }
    if (identifier.find(b.tenant_id) != std::string::npos) {
      EXPECT_EQ(customer, customer_of(b));
    }
  }
  // More usage later: reported from the mark on, adding up.
  for (int i = 0; i < 4; ++i)
    ASSERT_EQ(call(*server_, "GET", "/api/tenant", a.access_token).status, 200);
  std::this_thread::sleep_for(2500ms);
  ASSERT_TRUE(eventually([&] { return all_reported(a) && counted(a) >= ca + 4; }, 60s));
  EXPECT_EQ(stripe_total(a), counted(a));
  EXPECT_EQ(stripe_total(b), cb) << "A's usage never lands on B's customer";
}

TEST_F(MeteringStripe, AFailedReportIsResentWithTheSameIdentifierAndCountedOnce) {
  Account c = subscribed("Meter C");
  // C's calls happen while its subscription is not billable yet, so the first report holds them
  // all (one window, whatever the scheduler's timing).
  sql(db_->admin_url(), "UPDATE subscriptions SET status = 'incomplete' WHERE tenant_id = $1",
      {c.tenant_id});
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(call(*server_, "GET", "/api/tenant", c.access_token).status, 200);
  }
  std::this_thread::sleep_for(2500ms);  // flushed and settled
  stripe_->control("POST", "/faults",
                   R"({"path_prefix":"/v1/billing/meter_events","status":500,"count":2})");
  sql(db_->admin_url(), "UPDATE subscriptions SET status = 'active' WHERE tenant_id = $1",
      {c.tenant_id});
  auto state = [&] {
    return scalar(*db_,
                  "SELECT row_to_json(r)::text FROM usage_stripe_reports r WHERE tenant_id = $1",
                  {c.tenant_id});
  };
  ASSERT_TRUE(eventually(
      [&] {
        return scalar(*db_,
                      "SELECT attempts FROM usage_stripe_reports WHERE tenant_id = $1 AND "
                      "pending_identifier IS NOT NULL",
                      {c.tenant_id}) >= "1";
      },
      60s))
      << state();
  // A downgrade while the report is pending: the report is still finished (never lost).
  sql(db_->admin_url(), "UPDATE subscriptions SET plan_id = 'starter' WHERE tenant_id = $1",
      {c.tenant_id});
  // The scheduler runs the report every ~10 s (its tick): the failed runs, then the resend.
  ASSERT_TRUE(eventually([&] { return reported_total(c) > 0; }, 90s)) << state();
  std::vector<std::string> failed, sent;
  for (const object& r : meter_event_requests()) {
    std::string identifier = str(r.at("params").as_object(), "identifier");
    if (identifier.find(c.tenant_id) == std::string::npos) continue;
    (r.at("status").as_int64() == 200 ? sent : failed).push_back(identifier);
  }
  ASSERT_EQ(failed.size(), 2u) << "the emulator refused two sends";
  ASSERT_EQ(sent.size(), 1u) << "one report, sent once it went through";
  EXPECT_EQ(failed[0], failed[1]);
  EXPECT_EQ(failed[0], sent[0]) << "the resend carries the failed report's identifier";
  EXPECT_GE(counted(c), 5);
  EXPECT_EQ(stripe_total(c), counted(c)) << "counted once at Stripe";
  EXPECT_EQ(reported_total(c), counted(c));
  EXPECT_EQ(
      scalar(*db_, "SELECT count(*) FROM usage_stripe_due() WHERE tenant_id = $1", {c.tenant_id}),
      "0")
      << "on starter, nothing more is reported";
}

// Issue 12: the metered price is on the subscription, so Stripe charges the reported usage. Pro's
// included api_calls are lowered to 20 and each call past them priced at 10 cents before
// sync-plans, so a few calls make an overage. Tenants A and B both check out Pro.
class MeteredSubscription : public ::testing::Test {
 protected:
  // The server's settings beyond these (MeteredSubscriptionNow).
  virtual void configure(std::map<std::string, std::string>& /*env*/) const {}
  void SetUp() override {
    std::map<std::string, std::string> env = stripe_.hsea_env();
    env["HSEA_USAGE_REPORT_SECONDS"] = "1";
    env["HSEA_USAGE_REPORT_SETTLE_SECONDS"] = "1";
    env["HSEA_METERING_FLUSH_SECONDS"] = "1";
    configure(env);
    sql(db_.admin_url(),
        "UPDATE plans SET limits = jsonb_set(limits, '{api_calls}', '20'), "
        "metered = '{\"api_calls\": {\"unit_amount_decimal\": \"10\"}}' WHERE id = 'pro'");
    server_ = std::make_unique<testkit::TestServer>(db_, env);
    stripe_.set_webhook_url(server_->url("/api/webhooks/stripe"));
    testkit::RunResult sync = stripe_.sync_plans(db_);
    ASSERT_EQ(sync.exit_code, 0) << sync.output;
    metered_price_ =
        q("SELECT stripe_metered_price_ids->'api_calls'->>'month' FROM plans WHERE id = 'pro'");
    ASSERT_FALSE(metered_price_.empty());
    a_ = subscribed("Overage A", "pro");
    b_ = subscribed("Overage B", "pro");
    ASSERT_FALSE(HasFailure());
  }

  // A new tenant that checked out `plan`.
  Account subscribed(const std::string& org, const std::string& plan) const {
    Account t = testkit::sign_up(*server_, org);
    stripe_.subscribe(*server_, t, plan);
    // A new tenant is already active on Free: wait for Stripe's subscription on the plan.
    EXPECT_TRUE(eventually([&] {
      return q("SELECT plan_id || ':' || status FROM subscriptions WHERE tenant_id = $1 AND "
               "stripe_subscription_id IS NOT NULL",
               {t.tenant_id}) == plan + ":active";
    }));
    return t;
  }

  // A new tenant that checked out `plan` yearly for a Stripe customer on a test clock, so that
  // its period ends at `renewal` (75 s from now in HSEA's clock, time for the sign-up, the checkout
  // and the calls the test makes before the renewal on a busy machine): the clock starts a year
  // before. Stripe and HSEA then agree on the time around the renewal (the default clock would be
  // a month ahead once advanced). Empty (the test skips) on the 29th of February.
  Account on_test_clock(const std::string& org, const std::string& plan, std::int64_t& renewal,
                        std::string& clock) const {
    std::time_t end = std::time(nullptr) + 75;
    std::tm tm{};
    gmtime_r(&end, &tm);
    if (tm.tm_mon == 1 && tm.tm_mday == 29) return Account{};
    tm.tm_year -= 1;
    std::int64_t start = timegm(&tm);
    renewal = end;
    Account t = testkit::sign_up(*server_, org);
    clock = std::string(
        stripe_.api("POST", "/v1/test_helpers/test_clocks", "frozen_time=" + std::to_string(start))
            .at("id")
            .as_string());
    std::string customer(stripe_.api("POST", "/v1/customers", "name=Clocked&test_clock=" + clock)
                             .at("id")
                             .as_string());
    sql(db_.admin_url(), "UPDATE subscriptions SET stripe_customer_id = $1 WHERE tenant_id = $2",
        {customer, t.tenant_id});
    stripe_.subscribe(*server_, t, plan, "year");
    EXPECT_TRUE(eventually([&] {
      return q("SELECT plan_id || ':' || status || ':' || extract(epoch FROM "
               "current_period_end)::bigint FROM subscriptions WHERE tenant_id = $1 AND "
               "stripe_subscription_id IS NOT NULL",
               {t.tenant_id}) == plan + ":active:" + std::to_string(renewal);
    })) << q("SELECT row_to_json(s)::text FROM subscriptions s WHERE tenant_id = $1",
             {t.tenant_id});
    return t;
  }
  void advance_clock(const std::string& clock, std::int64_t to) const {
    stripe_.api("POST", "/v1/test_helpers/test_clocks/" + clock + "/advance",
                "frozen_time=" + std::to_string(to));
    EXPECT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  }
  // Sleeps until HSEA's clock is `seconds` past `at`.
  static void wait_until(std::int64_t at) {
    while (static_cast<std::int64_t>(std::time(nullptr)) < at) std::this_thread::sleep_for(200ms);
  }
  std::string mark(const Account& t) const {
    return q(
        "SELECT extract(epoch FROM reported_until)::bigint FROM usage_stripe_reports WHERE "
        "tenant_id = $1 AND meter = 'api_calls' AND pending_identifier IS NULL",
        {t.tenant_id});
  }
  std::string metered_price(const std::string& plan, const std::string& interval) const {
    return q("SELECT stripe_metered_price_ids->'api_calls'->>$2 FROM plans WHERE id = $1",
             {plan, interval});
  }

  std::string q(const std::string& statement, const std::vector<std::string>& params = {}) const {
    return scalar(db_, statement, params);
  }
  std::string flat_price(const std::string& plan) const {
    return q("SELECT stripe_monthly_price_id FROM plans WHERE id = $1", {plan});
  }
  boost::json::value stripe_sub(const Account& t) const {
    return stripe_.api(
        "GET", "/v1/subscriptions/" + q("SELECT stripe_subscription_id FROM subscriptions WHERE "
                                        "tenant_id = $1",
                                        {t.tenant_id}));
  }
  // The prices of the tenant's Stripe subscription's items, in order.
  std::vector<std::string> item_prices(const Account& t) const {
    std::vector<std::string> out;
    boost::json::value sub = stripe_sub(t);
    for (const auto& item : sub.at("items").at("data").as_array()) {
      out.emplace_back(item.at("price").at("id").as_string());
    }
    return out;
  }
  void api_calls(const Account& t, int n) const {
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(call(*server_, "GET", "/api/tenant", t.access_token).status, 200);
    }
  }
  // Every api_call of the tenant recorded so far has been reported to Stripe.
  bool reported(const Account& t) const {
    return q("SELECT count(*) FROM usage_events e, usage_stripe_reports r WHERE "
             "e.tenant_id = $1 AND r.tenant_id = $1 AND e.meter = 'api_calls' AND "
             "r.meter = 'api_calls' AND r.pending_identifier IS NULL AND "
             "e.recorded_at >= r.reported_until",
             {t.tenant_id}) == "0" &&
           !q("SELECT reported_total FROM usage_stripe_reports WHERE tenant_id = $1", {t.tenant_id})
                .empty();
  }
  // The tenant's api_calls Stripe's meter holds, over all time.
  long stripe_total(const Account& t) const {
    std::string meter = q("SELECT stripe_meter_id FROM stripe_meters WHERE meter = 'api_calls'");
    std::string customer =
        q("SELECT stripe_customer_id FROM subscriptions WHERE tenant_id = $1", {t.tenant_id});
    boost::json::value v = stripe_.api(
        "GET", "/v1/billing/meters/" + meter + "/event_summaries?customer=" + customer +
                   "&start_time=0&end_time=" + std::to_string(std::time(nullptr) + 86400 * 40));
    const auto& data = v.at("data").as_array();
    return data.empty() ? 0 : static_cast<long>(data[0].at("aggregated_value").as_int64());
  }
  // The lines of the tenant's latest Stripe invoice.
  boost::json::array latest_lines(const Account& t) const {
    std::string latest(stripe_sub(t).at("latest_invoice").as_string());
    boost::json::value inv = stripe_.api("GET", "/v1/invoices/" + latest);
    return inv.at("lines").at("data").as_array();
  }
  // The usage line of the tenant's latest Stripe invoice (Pro's metered price by default).
  object usage_line(const Account& t, const std::string& price = "") const {
    for (const auto& l : latest_lines(t)) {
      if (l.at("pricing").at("price_details").at("price").as_string() ==
          (price.empty() ? metered_price_ : price)) {
        return l.as_object();
      }
    }
    ADD_FAILURE() << "no usage line";
    return object{};
  }

  testkit::TestDatabase db_;
  testkit::StripeEmulator stripe_;
  std::unique_ptr<testkit::TestServer> server_;
  std::string metered_price_;
  Account a_, b_;
};

// A Pro checkout makes two items (flat + metered); the renewal invoice bills the usage past the
// tier; the mirrored invoice and its PDF show it; a downgrade to Starter now removes the metered
// item. B, on Pro as well, is billed only its own.
TEST_F(MeteredSubscription, ProBillsTheOverageOnItsMeteredItemAndStarterDropsIt) {
  const Account& a = a_;
  const Account& b = b_;
  const testkit::TestServer& server = *server_;
  const std::string& metered_price = metered_price_;
  // The checkout sent both prices; the subscription holds both, the metered one without quantity.
  for (const Account* t : {&a, &b}) {
    boost::json::value sub = stripe_sub(*t);
    const auto& items = sub.at("items").at("data").as_array();
    ASSERT_EQ(items.size(), 2u) << boost::json::serialize(sub);
    EXPECT_EQ(items[1].at("price").at("id").as_string(), metered_price);
    EXPECT_EQ(items[1].as_object().if_contains("quantity"), nullptr);
  }
  api_calls(a, 30);
  api_calls(b, 1);
  std::this_thread::sleep_for(2500ms);  // flushed as usage events, then reported
  ASSERT_TRUE(eventually([&] { return reported(a) && reported(b); }, 60s));
  stripe_.advance_days(32);  // the period ends: the renewal invoice bills the usage
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  // The renewal invoice's usage line: every call past the 20 included at 10 cents.
  object la = usage_line(a), lb = usage_line(b);
  ASSERT_FALSE(la.empty());
  ASSERT_FALSE(lb.empty());
  std::int64_t qa = la.at("quantity").as_int64(), qb = lb.at("quantity").as_int64();
  EXPECT_GE(qa, 30);
  EXPECT_EQ(la.at("amount").as_int64(), (qa - 20) * 10);
  EXPECT_EQ(lb.at("amount").as_int64(), std::max<std::int64_t>(0, qb - 20) * 10);
  EXPECT_GE(qa, qb + 29) << "A's calls are billed to A only";
  // HSEA mirrors the invoice with its usage line, and its PDF shows it.
  std::string overage = std::to_string((qa - 20) * 10);
  ASSERT_TRUE(eventually([&] {
    return q("SELECT count(*) FROM invoice_lines WHERE tenant_id = $1 AND amount = $2 AND "
             "description LIKE '%metered%'",
             {a.tenant_id, overage}) == "1";
  }));
  std::string invoice = q(
      "SELECT invoice_id FROM invoice_lines WHERE tenant_id = $1 AND description LIKE '%metered%' "
      "AND amount = $2",
      {a.tenant_id, overage});
  object shown = json_of(call(server, "GET", "/api/invoices/" + invoice, a.access_token));
  bool seen = false;
  for (const auto& l : shown.at("lines").as_array()) {
    seen =
        seen || (l.at("amount").as_int64() == (qa - 20) * 10 &&
                 std::string(l.at("description").as_string()).find("metered") != std::string::npos);
  }
  EXPECT_TRUE(seen) << boost::json::serialize(shown);
  EXPECT_EQ(call(server, "GET", "/api/invoices/" + invoice, b.access_token).status, 404);
  HttpResponse pdf = call(server, "GET", "/api/invoices/" + invoice + "/pdf", a.access_token);
  ASSERT_EQ(pdf.status, 200);
  {
    char path[] = "/tmp/hsea-metered-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, pdf.body.data(), pdf.body.size()), static_cast<ssize_t>(pdf.body.size()));
    close(fd);
    std::string text;
    FILE* p = popen((std::string("pdftotext -layout -enc UTF-8 ") + path + " - 2>&1").c_str(), "r");
    char buf[4096];
    std::size_t n = 0;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
    pclose(p);
    unlink(path);
    EXPECT_NE(text.find("metered"), std::string::npos) << text;
    EXPECT_NE(text.find(std::to_string(qa)), std::string::npos) << text;
  }
  // Down to Starter now: the flat price swapped, the metered item removed; B keeps both.
  HttpResponse down = call(server, "POST", "/api/subscriptions/downgrade", a.access_token,
                           R"({"plan_id":"starter","when":"now"})");
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(str(json_of(down), "plan_id"), "starter");
  boost::json::value sa = stripe_sub(a);
  const auto& items = sa.at("items").at("data").as_array();
  ASSERT_EQ(items.size(), 1u) << boost::json::serialize(sa);
  EXPECT_EQ(items[0].at("price").at("id").as_string(), flat_price("starter"));
  EXPECT_EQ(stripe_sub(b).at("items").at("data").as_array().size(), 2u);
  // Back up to Pro: the preview and the upgrade add the metered item again.
  HttpResponse preview =
      call(server, "GET", "/api/subscriptions/preview?plan_id=pro", a.access_token);
  ASSERT_EQ(preview.status, 200) << preview.body;
  EXPECT_GT(json_of(preview).at("amount_due").as_int64(), 0) << preview.body;
  HttpResponse up =
      call(server, "POST", "/api/subscriptions/upgrade", a.access_token, R"({"plan_id":"pro"})");
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(str(json_of(up), "plan_id"), "pro");
  boost::json::value again = stripe_sub(a);
  const auto& now = again.at("items").at("data").as_array();
  ASSERT_EQ(now.size(), 2u) << boost::json::serialize(again);
  EXPECT_EQ(now[0].at("price").at("id").as_string(), flat_price("pro"));
  EXPECT_EQ(now[1].at("price").at("id").as_string(), metered_price);
}

// Issue 12, a downgrade at the period's end: Stripe bills the next period at Starter's flat price,
// but the metered item stays until then, so the renewal invoice bills every call of the period
// past the included 20, also those made after the downgrade was asked for; then Starter applies
// and its subscription holds only Starter's flat item. B, on Pro, is untouched.
TEST_F(MeteredSubscription, ADowngradeAtThePeriodsEndBillsThePeriodsUsageUntilItApplies) {
  const Account& a = a_;
  const Account& b = b_;
  api_calls(a, 12);
  api_calls(b, 3);
  std::this_thread::sleep_for(2500ms);
  ASSERT_TRUE(eventually([&] { return reported(a) && reported(b); }, 60s));
  long before_downgrade = stripe_total(a);
  ASSERT_GE(before_downgrade, 12);
  HttpResponse down = call(*server_, "POST", "/api/subscriptions/downgrade", a.access_token,
                           R"({"plan_id":"starter","when":"period_end"})");
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(str(json_of(down), "plan_id"), "pro") << "Pro until the paid period ends";
  EXPECT_EQ(str(json_of(down), "pending_plan_id"), "starter");
  // Stripe bills the next period at Starter's price; Pro's metered item stays on the subscription.
  EXPECT_EQ(item_prices(a), (std::vector<std::string>{flat_price("starter"), metered_price_}));
  EXPECT_EQ(item_prices(b), (std::vector<std::string>{flat_price("pro"), metered_price_}));
  // More calls after the downgrade was asked for, in the same period.
  api_calls(a, 25);
  std::this_thread::sleep_for(2500ms);
  ASSERT_TRUE(eventually([&] { return reported(a) && reported(b); }, 60s));
  long total_a = stripe_total(a), total_b = stripe_total(b);
  ASSERT_GE(total_a, before_downgrade + 25) << "the calls after the downgrade reached Stripe";
  EXPECT_EQ(item_prices(a).size(), 2u) << "still metered until the period ends";
  stripe_.advance_days(32);  // the period ends: the renewal invoice, then Starter applies
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  // Starter applied: its flat item only, in HSEA and on Stripe.
  ASSERT_TRUE(eventually([&] {
    return q("SELECT plan_id || ':' || COALESCE(pending_plan_id, '-') FROM subscriptions WHERE "
             "tenant_id = $1",
             {a.tenant_id}) == "starter:-" &&
           item_prices(a) == std::vector<std::string>{flat_price("starter")};
  })) << boost::json::serialize(stripe_sub(a));
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  // The renewal invoice (the item's removal invoiced nothing): Starter's flat price for the period
  // ahead, and every call of the period ended past the included 20 on Pro's metered price.
  boost::json::array lines = latest_lines(a);
  std::vector<std::string> priced;
  for (const auto& l : lines) {
    priced.emplace_back(l.at("pricing").at("price_details").at("price").as_string());
  }
  EXPECT_EQ(std::count(priced.begin(), priced.end(), flat_price("starter")), 1)
      << boost::json::serialize(lines);
  EXPECT_EQ(std::count(priced.begin(), priced.end(), flat_price("pro")), 0);
  object la = usage_line(a);
  ASSERT_FALSE(la.empty());
  EXPECT_EQ(la.at("quantity").as_int64(), total_a) << boost::json::serialize(lines);
  EXPECT_EQ(la.at("amount").as_int64(), (total_a - 20) * 10);
  // B: Pro with both items, billed its own calls only.
  EXPECT_EQ(item_prices(b), (std::vector<std::string>{flat_price("pro"), metered_price_}));
  EXPECT_EQ(q("SELECT plan_id FROM subscriptions WHERE tenant_id = $1", {b.tenant_id}), "pro");
  object lb = usage_line(b);
  ASSERT_FALSE(lb.empty());
  EXPECT_EQ(lb.at("quantity").as_int64(), total_b);
  EXPECT_EQ(lb.at("amount").as_int64(), std::max<long>(0, total_b - 20) * 10);
}

// Between two metered plans (Enterprise down to Pro at the period's end) the metered price swaps
// only when Pro applies: the subscription never holds two prices of the one meter, which would
// bill each call twice, and the renewal bills the period's calls at Enterprise's price.
TEST_F(MeteredSubscription, ADowngradeBetweenMeteredPlansSwapsTheMeteredPriceWhenItApplies) {
  std::string enterprise_metered = q(
      "SELECT stripe_metered_price_ids->'api_calls'->>'month' FROM plans WHERE id = 'enterprise'");
  ASSERT_FALSE(enterprise_metered.empty());
  Account c = subscribed("Overage C", "enterprise");
  ASSERT_FALSE(HasFailure());
  HttpResponse down = call(*server_, "POST", "/api/subscriptions/downgrade", c.access_token,
                           R"({"plan_id":"pro"})");
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(str(json_of(down), "pending_plan_id"), "pro") << "at the period's end by default";
  EXPECT_EQ(item_prices(c), (std::vector<std::string>{flat_price("pro"), enterprise_metered}));
  api_calls(c, 6);
  std::this_thread::sleep_for(2500ms);
  ASSERT_TRUE(eventually([&] { return reported(c); }, 60s));
  long total = stripe_total(c);
  stripe_.advance_days(32);
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  ASSERT_TRUE(eventually([&] {
    return q("SELECT plan_id FROM subscriptions WHERE tenant_id = $1", {c.tenant_id}) == "pro" &&
           item_prices(c) == std::vector<std::string>{flat_price("pro"), metered_price_};
  })) << boost::json::serialize(stripe_sub(c));
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  // The renewal billed the period's calls at Enterprise's metered price, none at Pro's.
  object line = usage_line(c, enterprise_metered);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.at("quantity").as_int64(), total);
  for (const auto& l : latest_lines(c)) {
    EXPECT_NE(l.at("pricing").at("price_details").at("price").as_string(), metered_price_);
  }
  EXPECT_EQ(item_prices(b_), (std::vector<std::string>{flat_price("pro"), metered_price_}));
}

// Issue 12, a downgrade between metered plans at the period's end, around the renewal: the ended
// period's last calls are reported at the renewal, dated before it, onto the renewal invoice while
// it is a draft (Enterprise's price); the calls after the renewal are held back while Enterprise's
// metered item is still on the subscription (its deletion would bill none of them), and reported
// once Pro's metered item replaced it, dated after that, so Pro's price bills them: none lost.
TEST_F(MeteredSubscription,
       ADowngradeBetweenMeteredPlansBillsTheCallsBetweenRenewalAndSwapAtTheNewPrice) {
  std::int64_t renewal = 0;
  std::string clock;
  Account d = on_test_clock("Swap D", "enterprise", renewal, clock);
  if (d.tenant_id.empty()) GTEST_SKIP() << "no such date a year before";
  ASSERT_FALSE(HasFailure());
  std::string enterprise_metered = metered_price("enterprise", "year");
  std::string pro_metered = metered_price("pro", "year");
  ASSERT_FALSE(enterprise_metered.empty());
  ASSERT_FALSE(pro_metered.empty());
  HttpResponse down = call(*server_, "POST", "/api/subscriptions/downgrade", d.access_token,
                           R"({"plan_id":"pro"})");
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(str(json_of(down), "pending_plan_id"), "pro");
  api_calls(d, 6);
  std::this_thread::sleep_for(2s);  // flushed
  ASSERT_LT(static_cast<std::int64_t>(std::time(nullptr)), renewal) << "the set-up took too long";
  wait_until(renewal + 3);  // the calls were recorded before the renewal, HSEA's clock is past it
  long before =
      std::stol(q("SELECT COALESCE(sum(quantity), 0) FROM usage_events WHERE tenant_id "
                  "= $1 AND meter = 'api_calls'",
                  {d.tenant_id}));
  ASSERT_GE(before, 6);
  advance_clock(clock, renewal + 1);  // renewed; the renewal invoice is a draft for an hour
  ASSERT_TRUE(eventually([&] {
    return q("SELECT plan_id || ':' || metered_items_pending FROM subscriptions WHERE tenant_id = "
             "$1",
             {d.tenant_id}) == "pro:true" &&
           mark(d) == std::to_string(renewal);
  })) << q("SELECT row_to_json(r)::text FROM usage_stripe_reports r WHERE tenant_id = $1",
           {d.tenant_id});
  EXPECT_EQ(stripe_total(d), before) << "the ended period's calls, all of them";
  // Calls of the new period while Enterprise's metered item is still there: held back.
  api_calls(d, 7);
  std::this_thread::sleep_for(4s);  // flushed, and the periodic report ran
  EXPECT_EQ(mark(d), std::to_string(renewal)) << "nothing past the renewal is reported yet";
  EXPECT_EQ(stripe_total(d), before);
  EXPECT_EQ(item_prices(d), (std::vector<std::string>{
                                q("SELECT stripe_yearly_price_id FROM plans WHERE id = 'pro'"),
                                enterprise_metered}));
  // The grace hour ends: the renewal invoice is final, then the job swaps the metered item.
  advance_clock(clock, renewal + 3601);
  ASSERT_TRUE(eventually(
      [&] {
        return item_prices(d) ==
               std::vector<std::string>{
                   q("SELECT stripe_yearly_price_id FROM plans WHERE id = 'pro'"), pro_metered};
      },
      120s))
      << boost::json::serialize(stripe_sub(d));
  ASSERT_TRUE(eventually([&] { return reported(d) && stripe_total(d) >= before + 7; }, 60s));
  long after = stripe_total(d) - before;
  // The renewal invoice billed the ended period's calls at Enterprise's price.
  object line = usage_line(d, enterprise_metered);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.at("quantity").as_int64(), before) << boost::json::serialize(latest_lines(d));
  // The next renewal bills the calls since the renewal at Pro's price.
  advance_clock(clock, renewal + 366 * 86400 + 3601);
  object next = usage_line(d, pro_metered);
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.at("quantity").as_int64(), after) << boost::json::serialize(latest_lines(d));
  EXPECT_GE(after, 7);
  EXPECT_EQ(item_prices(b_), (std::vector<std::string>{flat_price("pro"), metered_price_}));
}

// Issue 12, an upgrade between metered plans (Pro up to Enterprise, now by default): Pro's metered
// price is swapped for Enterprise's, and the upgrade's invoice bills the calls so far at Pro's
// price; Enterprise's price bills only the calls after the upgrade, at the next renewal.
TEST_F(MeteredSubscription, AnUpgradeBetweenMeteredPlansBillsTheOldPricesUsageSoFar) {
  const Account& a = a_;
  std::string enterprise_metered = q(
      "SELECT stripe_metered_price_ids->'api_calls'->>'month' FROM plans WHERE id = 'enterprise'");
  ASSERT_FALSE(enterprise_metered.empty());
  api_calls(a, 26);
  std::this_thread::sleep_for(2500ms);
  ASSERT_TRUE(eventually([&] { return reported(a); }, 60s));
  long before = stripe_total(a);
  ASSERT_GE(before, 26);
  std::this_thread::sleep_for(2s);  // the reported usage's second passes (see above)
  HttpResponse up = call(*server_, "POST", "/api/subscriptions/upgrade", a.access_token,
                         R"({"plan_id":"enterprise"})");
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_EQ(str(json_of(up), "plan_id"), "enterprise");
  object line = usage_line(a);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.at("quantity").as_int64(), before) << boost::json::serialize(latest_lines(a));
  EXPECT_EQ(line.at("amount").as_int64(), (before - 20) * 10);
  EXPECT_EQ(item_prices(a),
            (std::vector<std::string>{flat_price("enterprise"), enterprise_metered}));
  api_calls(a, 4);
  std::this_thread::sleep_for(2500ms);
  ASSERT_TRUE(eventually([&] { return reported(a) && stripe_total(a) >= before + 4; }, 60s));
  long after = stripe_total(a) - before;
  stripe_.advance_days(32);
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  object renewal = usage_line(a, enterprise_metered);
  ASSERT_FALSE(renewal.empty());
  EXPECT_EQ(renewal.at("quantity").as_int64(), after) << "only the calls since the upgrade";
  EXPECT_EQ(renewal.at("amount").as_int64(), 0) << "within Enterprise's included calls";
  for (const auto& l : latest_lines(a)) {
    EXPECT_NE(l.at("pricing").at("price_details").at("price").as_string(), metered_price_);
  }
  EXPECT_EQ(item_prices(b_), (std::vector<std::string>{flat_price("pro"), metered_price_}));
}

// Issue 12, changes that end the metered items' period now. The periodic report runs once a day
// here (HSEA_USAGE_REPORT_SECONDS), its one run at the server's start, when nothing is older than
// its settle time (300 s): so what Stripe's invoice of the change bills is what the change
// reported itself, just before it. With a
// statement timeout of 2 s, that report takes the usage recorded up to 4 s before (the timeout
// plus 2 s).
class MeteredSubscriptionNow : public MeteredSubscription {
 protected:
  void configure(std::map<std::string, std::string>& env) const override {
    env["HSEA_USAGE_REPORT_SECONDS"] = "86400";
    env["HSEA_USAGE_REPORT_SETTLE_SECONDS"] = "300";
    env["HSEA_DB_STATEMENT_TIMEOUT_MS"] = "2000";
  }
  // Until the calls made so far are written (each thread's flush, every second) and older than
  // the settle time of a change's report.
  static void settle() { std::this_thread::sleep_for(7s); }
  // The tenant's api_calls HSEA recorded in its current period.
  long recorded(const Account& t) const {
    return std::stol(
        q("SELECT COALESCE(sum(e.quantity), 0) FROM usage_events e JOIN subscriptions "
          "s ON s.tenant_id = e.tenant_id WHERE e.tenant_id = $1 AND "
          "e.meter = 'api_calls' AND e.recorded_at >= s.current_period_start",
          {t.tenant_id}));
  }
  // The Stripe call that ended `t`'s subscription now: a DELETE with its parameters.
  object deletion(const Account& t) const {
    std::string path = "/v1/subscriptions/" + q("SELECT stripe_subscription_id FROM subscriptions "
                                                "WHERE tenant_id = $1",
                                                {t.tenant_id});
    for (const auto& r : stripe_.requests()) {
      const object& o = r.as_object();
      if (str(o, "method") == "DELETE" && str(o, "path") == path) return o.at("params").as_object();
    }
    ADD_FAILURE() << "no DELETE " << path;
    return object{};
  }
  // `t` (30 calls, 20 included) ended its subscription now by `change`: Stripe's final invoice
  // bills every call HSEA recorded before it, at 10 cents past the included 20, and HSEA mirrors
  // it for `t` only. `other` (3 calls of its own) has nothing reported, its invoices and items as
  // they were.
  void expect_calls_billed_when_ending_now(const Account& t, const Account& other,
                                           const std::string& path, const std::string& body) {
    std::string other_invoice(stripe_sub(other).at("latest_invoice").as_string());
    api_calls(t, 30);
    api_calls(other, 3);
    settle();
    long calls = recorded(t);
    ASSERT_GE(calls, 30);
    HttpResponse r = call(*server_, "POST", path, t.access_token, body);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(str(json_of(r), "status"), "canceled");
    // Stripe was asked for the final invoice, without a credit for the paid time left.
    object params = deletion(t);
    EXPECT_EQ(str(params, "invoice_now"), "true") << boost::json::serialize(params);
    EXPECT_EQ(str(params, "prorate"), "false");
    object line = usage_line(t);
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.at("quantity").as_int64(), calls) << boost::json::serialize(latest_lines(t));
    EXPECT_EQ(line.at("amount").as_int64(), (calls - 20) * 10);
    EXPECT_EQ(stripe_total(t), calls);
    EXPECT_TRUE(reported(t));
    std::string overage = std::to_string((calls - 20) * 10);
    EXPECT_TRUE(eventually([&] {
      return q("SELECT count(*) FROM invoice_lines WHERE tenant_id = $1 AND amount = $2 AND "
               "description LIKE '%metered%'",
               {t.tenant_id, overage}) == "1";
    }));
    std::string invoice =
        q("SELECT invoice_id FROM invoice_lines WHERE tenant_id = $1 AND description LIKE "
          "'%metered%' AND amount = $2",
          {t.tenant_id, overage});
    EXPECT_EQ(call(*server_, "GET", "/api/invoices/" + invoice, t.access_token).status, 200);
    EXPECT_EQ(call(*server_, "GET", "/api/invoices/" + invoice, other.access_token).status, 404);
    EXPECT_EQ(stripe_total(other), 0) << "t's change reported none of other's calls";
    EXPECT_EQ(stripe_sub(other).at("latest_invoice").as_string(), other_invoice);
    EXPECT_EQ(item_prices(other), (std::vector<std::string>{flat_price("pro"), metered_price_}));
  }
};

// Issue 12: cancel now bills the calls so far on Stripe's final invoice.
TEST_F(MeteredSubscriptionNow, CancelNowBillsTheCallsSoFarOnTheFinalInvoice) {
  expect_calls_billed_when_ending_now(a_, b_, "/api/subscriptions/cancel",
                                      R"({"at_period_end":false})");
}

// Issue 12: down to Free now (the subscription canceled now) bills the calls so far as well.
TEST_F(MeteredSubscriptionNow, ADowngradeToFreeNowBillsTheCallsSoFarOnTheFinalInvoice) {
  expect_calls_billed_when_ending_now(b_, a_, "/api/subscriptions/downgrade",
                                      R"({"plan_id":"free","when":"now"})");
}

// Issue 12: when Stripe refuses the report made before a cancel now, the cancellation goes ahead
// all the same; the report stays pending (the periodic report resends its identifier, counted
// once). B has nothing reported.
TEST_F(MeteredSubscriptionNow, AFailedReportDoesNotHoldUpCancelNow) {
  const Account& a = a_;
  api_calls(a, 25);
  settle();
  long calls = recorded(a);
  ASSERT_GE(calls, 25);
  stripe_.control("POST", "/faults",
                  R"({"path_prefix":"/v1/billing/meter_events","status":500,"count":50})");
  HttpResponse r = call(*server_, "POST", "/api/subscriptions/cancel", a.access_token,
                        R"({"at_period_end":false})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(str(json_of(r), "status"), "canceled");
  EXPECT_EQ(str(deletion(a), "invoice_now"), "true");
  EXPECT_EQ(stripe_total(a), 0);
  EXPECT_EQ(q("SELECT pending_value FROM usage_stripe_reports WHERE tenant_id = $1 AND "
              "attempts >= 1 AND last_error IS NOT NULL",
              {a.tenant_id}),
            std::to_string(calls));
  EXPECT_NE(server_->output().find("usage not reported to Stripe yet"), std::string::npos);
  // B may have a row of its own (the day's periodic report runs when the server starts), but
  // nothing reported or pending.
  EXPECT_EQ(q("SELECT COALESCE(sum(reported_total), 0) + count(pending_identifier) FROM "
              "usage_stripe_reports WHERE tenant_id = $1",
              {b_.tenant_id}),
            "0");
}

// Issue 12, a change now that deletes the metered item: in Stripe's classic billing mode a deleted
// metered item's usage is never billed, so HSEA ends the period with the change
// (billing_cycle_anchor=now) and that invoice bills the calls so far past the included 20, which
// the change reported first; the new period starts with Starter's flat item only. The preview
// showed the same. B is untouched.
TEST_F(MeteredSubscriptionNow, ADowngradeNowBillsTheUsageSoFarBeforeTheMeteredItemGoes) {
  const Account& a = a_;
  const Account& b = b_;
  std::string b_invoice(stripe_sub(b).at("latest_invoice").as_string());
  std::int64_t b_period_end =
      stripe_sub(b).at("items").at("data").at(0).at("current_period_end").as_int64();
  api_calls(a, 30);
  api_calls(b, 3);
  settle();
  long previewed_calls = recorded(a);
  ASSERT_GE(previewed_calls, 30);
  // The preview shows what the change invoices: the usage so far on Pro's metered price, which
  // the preview reports first (no report job runs here).
  HttpResponse preview =
      call(*server_, "GET", "/api/subscriptions/preview?plan_id=starter", a.access_token);
  ASSERT_EQ(preview.status, 200) << preview.body;
  bool previewed = false;
  object shown = json_of(preview);
  for (const auto& l : shown.at("lines").as_array()) {
    previewed = previewed || l.at("amount").as_int64() == (previewed_calls - 20) * 10;
  }
  EXPECT_TRUE(previewed) << preview.body;
  // More calls after the preview: the change itself reports them before Stripe ends the period.
  api_calls(a, 5);
  settle();
  long total_a = recorded(a);
  ASSERT_GE(total_a, previewed_calls + 5);
  std::int64_t overage = (total_a - 20) * 10;
  HttpResponse down = call(*server_, "POST", "/api/subscriptions/downgrade", a.access_token,
                           R"({"plan_id":"starter","when":"now"})");
  ASSERT_EQ(down.status, 200) << down.body;
  EXPECT_EQ(str(json_of(down), "plan_id"), "starter");
  // Stripe's invoice of the change: the usage line, Starter's new period, Pro's credit.
  object la = usage_line(a);
  ASSERT_FALSE(la.empty());
  EXPECT_EQ(la.at("quantity").as_int64(), total_a) << boost::json::serialize(latest_lines(a));
  EXPECT_EQ(la.at("amount").as_int64(), overage);
  std::vector<std::string> priced;
  for (const auto& l : latest_lines(a)) {
    priced.emplace_back(l.at("pricing").at("price_details").at("price").as_string());
  }
  EXPECT_EQ(std::count(priced.begin(), priced.end(), flat_price("starter")), 1);
  // The new period holds Starter's flat item only, and HSEA shows the new period.
  EXPECT_EQ(item_prices(a), std::vector<std::string>{flat_price("starter")});
  std::int64_t start =
      stripe_sub(a).at("items").at("data").at(0).at("current_period_start").as_int64();
  EXPECT_GE(start, static_cast<std::int64_t>(std::time(nullptr)) - 120);
  EXPECT_EQ(q("SELECT extract(epoch FROM current_period_start)::bigint FROM subscriptions WHERE "
              "tenant_id = $1",
              {a.tenant_id}),
            std::to_string(start));
  // HSEA mirrors that invoice with its usage line, for A only.
  ASSERT_TRUE(eventually([&] {
    return q("SELECT count(*) FROM invoice_lines WHERE tenant_id = $1 AND amount = $2 AND "
             "description LIKE '%metered%'",
             {a.tenant_id, std::to_string(overage)}) == "1";
  }));
  std::string invoice = q(
      "SELECT invoice_id FROM invoice_lines WHERE tenant_id = $1 AND description LIKE '%metered%' "
      "AND amount = $2",
      {a.tenant_id, std::to_string(overage)});
  EXPECT_EQ(call(*server_, "GET", "/api/invoices/" + invoice, a.access_token).status, 200);
  EXPECT_EQ(call(*server_, "GET", "/api/invoices/" + invoice, b.access_token).status, 404);
  // B: Pro with both items, its period and invoices as they were.
  EXPECT_EQ(item_prices(b), (std::vector<std::string>{flat_price("pro"), metered_price_}));
  EXPECT_EQ(stripe_sub(b).at("latest_invoice").as_string(), b_invoice);
  EXPECT_EQ(stripe_sub(b).at("items").at("data").at(0).at("current_period_end").as_int64(),
            b_period_end);
  EXPECT_EQ(stripe_total(a), total_a);
  EXPECT_EQ(stripe_total(b), 0) << "A's change reported none of B's calls";
  // A's next renewal bills no usage again; B's bills B's own calls (none reported here).
  long total_b = stripe_total(b);
  stripe_.advance_days(32);
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  for (const auto& l : latest_lines(a)) {
    EXPECT_NE(l.at("pricing").at("price_details").at("price").as_string(), metered_price_);
  }
  object lb = usage_line(b);
  ASSERT_FALSE(lb.empty());
  EXPECT_EQ(lb.at("quantity").as_int64(), total_b);
}

// Issue 12: calls made in the last seconds before a renewal, not reported before it (no periodic
// report runs here), are reported when HSEA applies the renewal, as an event dated the second
// before the period's end, so the renewal invoice (a draft for an hour) bills them, not the next;
// a send Stripe fails is retried by the report job meanwhile.
TEST_F(MeteredSubscriptionNow, CallsJustBeforeARenewalAreBilledOnTheRenewalInvoice) {
  std::int64_t renewal = 0;
  std::string clock;
  Account c = on_test_clock("Renewal C", "pro", renewal, clock);
  if (c.tenant_id.empty()) GTEST_SKIP() << "no such date a year before";
  ASSERT_FALSE(HasFailure());
  std::string pro_metered = metered_price("pro", "year");
  ASSERT_FALSE(pro_metered.empty());
  api_calls(c, 12);
  settle();
  long calls = recorded(c);
  ASSERT_GE(calls, 12);
  ASSERT_LT(static_cast<std::int64_t>(std::time(nullptr)), renewal) << "the set-up took too long";
  wait_until(renewal + 6);  // HSEA's clock past the renewal and its settle time
  EXPECT_EQ(stripe_total(c), 0) << "nothing reported before the renewal";
  // Stripe fails the first sends: the report job retries within seconds, not an hour later.
  stripe_.control("POST", "/faults",
                  R"({"path_prefix":"/v1/billing/meter_events","status":500,"count":6})");
  advance_clock(clock, renewal + 60);
  ASSERT_TRUE(eventually([&] { return stripe_total(c) == calls; }, 45s))
      << q("SELECT row_to_json(r)::text FROM usage_stripe_reports r WHERE tenant_id = $1",
           {c.tenant_id});
  // One report (one identifier, sent until Stripe took it), dated the second before the renewal.
  std::set<std::string> identifiers;
  std::set<std::int64_t> dated;
  int took = 0;
  for (const auto& x : stripe_.requests()) {
    const object& o = x.as_object();
    if (str(o, "path") != "/v1/billing/meter_events") continue;
    const object& params = o.at("params").as_object();
    if (str(params, "identifier").find(c.tenant_id) == std::string::npos) continue;
    identifiers.insert(str(params, "identifier"));
    dated.insert(std::stoll(str(params, "timestamp")));
    took += o.at("status").as_int64() == 200 ? 1 : 0;
  }
  EXPECT_EQ(identifiers.size(), 1u);
  EXPECT_EQ(took, 1);
  EXPECT_EQ(dated, std::set<std::int64_t>{renewal - 1});
  std::string draft(stripe_sub(c).at("latest_invoice").as_string());
  EXPECT_EQ(stripe_.api("GET", "/v1/invoices/" + draft).at("status").as_string(), "draft");
  advance_clock(clock, renewal + 3600);  // the grace hour ends: the invoice is finalized
  object line = usage_line(c, pro_metered);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.at("quantity").as_int64(), calls) << boost::json::serialize(latest_lines(c));
  EXPECT_EQ(stripe_.api("GET", "/v1/invoices/" + draft).at("status").as_string(), "paid");
  // The next renewal bills none of them again.
  advance_clock(clock, renewal + 366 * 86400 + 3600);
  object next = usage_line(c, pro_metered);
  ASSERT_FALSE(next.empty());
  EXPECT_EQ(next.at("quantity").as_int64(), 0);
  EXPECT_EQ(stripe_total(b_), 0) << "none of it on B's customer";
}

// When Stripe refuses the new plan's metered price for good (archived there), the downgrade still
// applies in HSEA and later changes are not held up; the refusal is logged for an operator.
TEST_F(MeteredSubscription, ARefusedMeteredPriceDoesNotHoldUpThePendingPlan) {
  Account c = subscribed("Overage C", "enterprise");
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(
      call(*server_, "POST", "/api/subscriptions/downgrade", c.access_token, R"({"plan_id":"pro"})")
          .status,
      200);
  stripe_.api("POST", "/v1/prices/" + metered_price_, "active=false");
  stripe_.advance_days(32);
  ASSERT_TRUE(stripe_.wait_webhooks_idle(std::chrono::seconds(40)));
  ASSERT_TRUE(eventually([&] {
    return q("SELECT plan_id || ':' || COALESCE(pending_plan_id, '-') FROM subscriptions WHERE "
             "tenant_id = $1",
             {c.tenant_id}) == "pro:-";
  }));
  // The job that sets the items runs after that change commits.
  EXPECT_TRUE(eventually(
      [&] { return server_->output().find("could not be set on Stripe") != std::string::npos; }));
  EXPECT_EQ(item_prices(c).size(), 2u) << "Stripe kept Enterprise's metered item";
  HttpResponse cancel = call(*server_, "POST", "/api/subscriptions/cancel", c.access_token, "{}");
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  EXPECT_TRUE(json_of(cancel).at("cancel_at_period_end").as_bool());
  EXPECT_EQ(item_prices(b_), (std::vector<std::string>{flat_price("pro"), metered_price_}));
}

// Without Stripe: nothing is reported, and a metered meter past its included amount is charged
// (warned), not refused.
TEST(MeteringNoStripe, NothingIsReportedAndAMeteredMeterIsNeverRefused) {
  testkit::TestDatabase db;
  testkit::TestServer s(db, {{"HSEA_THREADS", "1"},
                             {"HSEA_USAGE_REPORT_SECONDS", "1"},
                             {"HSEA_USAGE_REPORT_SETTLE_SECONDS", "1"},
                             {"HSEA_METERING_FLUSH_SECONDS", "1"}});
  Account a = testkit::sign_up(s, "Metered Pro");
  Account b = testkit::sign_up(s, "Quota Free");
  // A's subscription as Stripe would have made it (pro, with a customer), and the meter.
  sql(db.admin_url(),
      "UPDATE subscriptions SET plan_id = 'pro', status = 'active', stripe_customer_id = "
      "'cus_x', stripe_subscription_id = 'sub_x' WHERE tenant_id = $1",
      {a.tenant_id});
  sql(db.admin_url(),
      "INSERT INTO stripe_meters (meter, event_name, stripe_meter_id) "
      "VALUES ('api_calls', 'hsea_api_calls', 'mtr_x')");
  for (const Account* t : {&a, &b}) {
    sql(db.admin_url(),
        "INSERT INTO quota_overrides (tenant_id, meter, quota) VALUES ($1, 'api_calls', 3)",
        {t->tenant_id});
  }
  std::this_thread::sleep_for(2500ms);  // the flush reads the overrides and entitlements
  for (int i = 0; i < 6; ++i) {
    HttpResponse r = call(s, "GET", "/api/tenant", a.access_token);
    ASSERT_EQ(r.status, 200) << "metered: past the included amount is billed, not refused";
    std::this_thread::sleep_for(300ms);
  }
  HttpResponse last = call(s, "GET", "/api/tenant", a.access_token);
  EXPECT_FALSE(last.header("x-quota-warning").empty());
  // B, on free (not metered), is refused at the same quota.
  bool refused = false;
  for (int i = 0; i < 8 && !refused; ++i) {
    refused = call(s, "GET", "/api/tenant", b.access_token).status == 429;
    std::this_thread::sleep_for(300ms);
  }
  EXPECT_TRUE(refused);
  std::this_thread::sleep_for(2500ms);
  object summary = json_of(call(s, "GET", "/api/usage/summary", a.access_token));
  EXPECT_EQ(str(summary, "plan_id"), "pro");
  bool seen = false;
  for (const auto& m : summary.at("meters").as_array()) {
    const object& o = m.as_object();
    if (str(o, "meter") != "api_calls") continue;
    seen = true;
    EXPECT_TRUE(o.at("metered").as_bool());
    EXPECT_EQ(str(o, "state"), "warning");
    EXPECT_GT(o.at("overage").as_int64(), 0);
  }
  EXPECT_TRUE(seen);
  EXPECT_EQ(scalar(db, "SELECT count(*) FROM usage_stripe_reports"), "0")
      << "without Stripe the report job does nothing";
}

// seats: the plan's limit (free: 3) counts the members; accepting an invitation needs a free
// seat (429 quota_exceeded otherwise, and nothing changes), sending one does not. One tenant's
// seats never count against another's; an operator override lifts the limit.
TEST(MeteringNoStripe, SeatsFollowThePlansLimit) {
  testkit::TestDatabase db;
  testkit::TestServer s(db);
  Account a = testkit::sign_up(s, "Seats A");
  Account b = testkit::sign_up(s, "Seats B");
  Account u1 = testkit::sign_up(s, "Seats U1");
  Account u2 = testkit::sign_up(s, "Seats U2");
  Account x = testkit::sign_up(s, "Seats X");
  for (const Account* t : {&a, &b}) {
    sql(db.admin_url(), "UPDATE users SET email_verified = true WHERE id = $1", {t->user_id});
  }
  testkit::add_member(db, a.tenant_id, u1.user_id, "member");
  testkit::add_member(db, a.tenant_id, u2.user_id, "member");
  auto invite = [&](const Account& by) {
    HttpResponse r = call(s, "POST", "/api/invitations", by.access_token,
                          R"({"email":")" + x.email + R"(","role":"member"})");
    EXPECT_EQ(r.status, 201) << r.body;
    auto mails = testkit::stored_mail_to(db, x.email, "invitation");
    std::smatch m;
    static const std::regex kLink(R"(accept-invitation\?token=([0-9a-f]+))");
    std::string text = mails.empty() ? "" : mails.back().text;
    EXPECT_TRUE(std::regex_search(text, m, kLink)) << text;
    return m.size() > 1 ? m[1].str() : std::string();
  };
  auto accept = [&](const std::string& token) {
    return call(s, "POST", "/api/invitations/accept", x.access_token,
                R"({"token":")" + token + R"("})");
  };
  auto members = [&](const Account& t) {
    return scalar(db, "SELECT count(*) FROM memberships WHERE tenant_id = $1", {t.tenant_id});
  };
  std::string to_a = invite(a);  // sending needs no free seat
  HttpResponse full = accept(to_a);
  ASSERT_EQ(full.status, 429) << full.body;
  EXPECT_EQ(str(json_of(full), "code"), "quota_exceeded");
  EXPECT_EQ(members(a), "3") << "a refused acceptance changes nothing";
  object summary = json_of(call(s, "GET", "/api/usage/summary", a.access_token));
  bool seen = false;
  for (const auto& m : summary.at("meters").as_array()) {
    const object& o = m.as_object();
    if (str(o, "meter") != "seats") continue;
    seen = true;
    EXPECT_EQ(o.at("used").as_int64(), 3);
    EXPECT_EQ(o.at("limit").as_int64(), 3);
    EXPECT_EQ(str(o, "kind"), "gauge");
  }
  EXPECT_TRUE(seen);
  // B has seats of its own.
  EXPECT_EQ(accept(invite(b)).status, 200);
  EXPECT_EQ(members(b), "2");
  // An operator override lifts A's limit: the same invitation is still open and now accepted.
  sql(db.admin_url(),
      "INSERT INTO quota_overrides (tenant_id, meter, quota) VALUES ($1, 'seats', 10)",
      {a.tenant_id});
  EXPECT_EQ(accept(to_a).status, 200);
  EXPECT_EQ(members(a), "4");
}

// storage_bytes: measured by the storage job as what each tenant's rows take, shown as a gauge;
// at its hard quota the routes that add data (StoresData) answer 429, reading stays open.
TEST(MeteringNoStripe, StorageIsMeasuredPerTenantAndItsQuotaRefusesOnlyWrites) {
  testkit::TestDatabase db;
  testkit::TestServer s(db, {{"HSEA_THREADS", "1"},
                             {"HSEA_METERING_STORAGE_SECONDS", "1"},
                             {"HSEA_METERING_FLUSH_SECONDS", "1"}});
  Account a = testkit::sign_up(s, "Storage A");
  Account b = testkit::sign_up(s, "Storage B");
  auto stored = [&](const Account& t) {
    std::string v = scalar(db,
                           "SELECT value FROM usage_gauges WHERE tenant_id = $1 AND "
                           "meter = 'storage_bytes'",
                           {t.tenant_id});
    return v.empty() ? -1L : std::stol(v);
  };
  ASSERT_TRUE(eventually([&] { return stored(a) > 0 && stored(b) > 0; }));
  // A stores more (a big usage batch); B does not.
  std::string batch = R"({"events":[)";
  for (int i = 0; i < 200; ++i) {
    batch += (i ? "," : "") + std::string(R"({"meter":"files.scanned","quantity":1,)") +
             R"("idempotency_key":"k-)" + std::to_string(i) + R"("})";
  }
  batch += "]}";
  long a_before = stored(a), b_before = stored(b);
  ASSERT_EQ(call(s, "POST", "/api/usage/events", a.access_token, batch).status, 200);
  ASSERT_TRUE(eventually([&] { return stored(a) > a_before + 200 * 40; })) << stored(a);
  long b_now = stored(b);
  EXPECT_LT(b_now - b_before, 2000) << "A's rows never count as B's storage";
  std::string exact = scalar(db,
                             "SELECT sum(pg_column_size(e.*)) FROM usage_events e WHERE "
                             "tenant_id = $1 AND meter = 'files.scanned'",
                             {a.tenant_id});
  EXPECT_GT(stored(a), std::stol(exact));
  object summary = json_of(call(s, "GET", "/api/usage/summary", a.access_token));
  for (const auto& m : summary.at("meters").as_array()) {
    const object& o = m.as_object();
    if (str(o, "meter") != "storage_bytes") continue;
    EXPECT_GT(o.at("used").as_int64(), 200 * 40) << "the latest measurement, not a sum";
    EXPECT_LT(o.at("used").as_int64(), 4 * stored(a));
    EXPECT_EQ(str(o, "kind"), "gauge");
    EXPECT_EQ(o.at("limit").as_int64(), 1073741824);
  }
  // A quota below what A stores: adding data is refused, reading is not.
  sql(db.admin_url(),
      "INSERT INTO quota_overrides (tenant_id, meter, quota) VALUES ($1, 'storage_bytes', 1000)",
      {a.tenant_id});
  std::this_thread::sleep_for(2500ms);
  sql(db.admin_url(), "UPDATE users SET email_verified = true WHERE id = $1", {a.user_id});
  bool refused = false;
  for (int i = 0; i < 10 && !refused; ++i) {
    HttpResponse r = call(s, "POST", "/api/webhooks/endpoints", a.access_token,
                          R"({"url":"https://hooks.example.com/x"})");
    refused = r.status == 429 && str(json_of(r), "code") == "quota_exceeded";
    if (!refused) std::this_thread::sleep_for(500ms);
  }
  EXPECT_TRUE(refused) << "a route that adds data is refused past the storage quota";
  EXPECT_EQ(call(s, "GET", "/api/tenant", a.access_token).status, 200);
  HttpResponse other = call(s, "POST", "/api/webhooks/endpoints", b.access_token,
                            R"({"url":"https://hooks.example.com/y"})");
  EXPECT_NE(other.status, 429) << other.body;
}

}  // namespace
}  // namespace hsea
