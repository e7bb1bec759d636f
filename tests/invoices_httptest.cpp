// Invoices and dunning from outside (HSEA-028, HSEA-030): the real `hsea serve`, two tenants.
// The listing, one invoice, its PDF read back with pdftotext, who may read them, and the 402 a
// suspended tenant's writes get while its reads keep working; then against the Stripe emulator:
// checkout -> paid invoice mirrored once (events late and twice) with its PDF and mail, a failed
// renewal -> past_due, mails, a retry, suspension after the grace period, pay now -> restored.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <functional>
#include <set>
#include <thread>

#include "core/ids.hpp"
#include "testkit/smtp_sink.hpp"
#include "testkit/stripe_emulator.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::eventually;
using testkit::http;
using testkit::json_of;
using testkit::sql;
using testkit::str;

std::string pdf_text(const std::string& pdf) {
  char path[] = "/tmp/hsea-invoice-XXXXXX";
  int fd = mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(write(fd, pdf.data(), pdf.size()), static_cast<ssize_t>(pdf.size()));
  close(fd);
  std::string out;
  FILE* p = popen((std::string("pdftotext -layout -enc UTF-8 ") + path + " - 2>&1").c_str(), "r");
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  EXPECT_EQ(pclose(p), 0) << out;
  unlink(path);
  return out;
}

class Invoices : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    server_ = new testkit::TestServer(
        *db_, {{"HSEA_BILLING_SELLER_NAME", "Acme Cloud GmbH"},
               {"HSEA_BILLING_SELLER_ADDRESS", "Hauptstraße 5; 10115 Berlin"},
               {"HSEA_BILLING_SELLER_TAX_ID", "DE123456789"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }

  // An invoice as the Stripe mirror writes it (the Stripe flow itself is tested below with the
  // emulator); returns its id.
  static std::string seed_invoice(const std::string& tenant, const std::string& number,
                                  const std::string& currency, long long amount,
                                  const std::string& status = "paid") {
    std::string id = core::uuid_v7();
    sql(db_->admin_url(),
        "INSERT INTO invoices (tenant_id, id, stripe_invoice_id, number, status, currency, "
        "subtotal, tax, total, amount_due, amount_paid, amount_remaining, customer_name, "
        "customer_email, customer_address, period_start, period_end, stripe_created_at, paid_at) "
        "VALUES ($1, $2::uuid, 'in_' || $2::text, $3, $4, $5, $6::bigint, $6::bigint / 10, "
        "$6::bigint * 11 / 10, $6::bigint * 11 / 10, "
        "CASE WHEN $4 = 'paid' THEN $6::bigint * 11 / 10 ELSE 0 END, "
        "CASE WHEN $4 = 'paid' THEN 0 ELSE $6::bigint * 11 / 10 END, 'Globex Corporation', "
        "'billing@globex.example', '{\"1 Main St\",\"Springfield\"}', '2026-11-01', "
        "'2026-12-01', '2026-11-01', CASE WHEN $4 = 'paid' THEN '2026-11-02'::timestamptz END)",
        {tenant, id, number, status, currency, std::to_string(amount)});
    sql(db_->admin_url(),
        "INSERT INTO invoice_lines (tenant_id, invoice_id, position, description, quantity, "
        "amount) VALUES ($1, $2, 0, 'Pro plan (monthly)', 1, $3)",
        {tenant, id, std::to_string(amount)});
    return id;
  }

  static testkit::TestDatabase* db_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* Invoices::db_ = nullptr;
testkit::TestServer* Invoices::server_ = nullptr;

TEST_F(Invoices, ListPagesTruthfullyAndShowsOnlyTheTenantsInvoices) {
  Account a = testkit::sign_up(*server_, "Invoices A");
  Account b = testkit::sign_up(*server_, "Invoices B");
  std::set<std::string> mine;
  for (int i = 0; i < 3; ++i) {
    mine.insert(seed_invoice(a.tenant_id, "A-000" + std::to_string(i), "usd", 4900));
  }
  std::string theirs = seed_invoice(b.tenant_id, "B-0001", "eur", 1000);
  // A draft is Stripe's work in progress: not listed, not readable.
  std::string draft = seed_invoice(a.tenant_id, "", "usd", 100, "draft");

  std::set<std::string> seen;
  std::string url = "/api/invoices?limit=2";
  auto first = http("GET", server_->url(url), "", {bearer(a.access_token)});
  ASSERT_EQ(first.status, 200) << first.body;
  object page = json_of(first);
  ASSERT_EQ(page.at("data").as_array().size(), 2u);
  EXPECT_TRUE(page.at("has_more").as_bool());
  for (const auto& inv : page.at("data").as_array()) seen.insert(str(inv.as_object(), "id"));
  std::string cursor = str(page.at("data").as_array().back().as_object(), "id");
  auto second =
      http("GET", server_->url(url + "&starting_after=" + cursor), "", {bearer(a.access_token)});
  ASSERT_EQ(second.status, 200) << second.body;
  page = json_of(second);
  ASSERT_EQ(page.at("data").as_array().size(), 1u);
  EXPECT_FALSE(page.at("has_more").as_bool());
  seen.insert(str(page.at("data").as_array()[0].as_object(), "id"));
  EXPECT_EQ(seen, mine);
  EXPECT_FALSE(seen.contains(theirs));
  EXPECT_FALSE(seen.contains(draft));
  object one = page.at("data").as_array()[0].as_object();
  EXPECT_EQ(one.at("total").as_int64(), 5390);
  EXPECT_EQ(str(one, "currency"), "usd");
  EXPECT_EQ(str(one, "pdf_url"), "/api/invoices/" + str(one, "id") + "/pdf");

  auto b_list = http("GET", server_->url("/api/invoices"), "", {bearer(b.access_token)});
  ASSERT_EQ(b_list.status, 200);
  ASSERT_EQ(json_of(b_list).at("data").as_array().size(), 1u);
  EXPECT_EQ(str(json_of(b_list).at("data").as_array()[0].as_object(), "id"), theirs);

  EXPECT_EQ(
      http("GET", server_->url("/api/invoices/" + draft), "", {bearer(a.access_token)}).status,
      404);
  EXPECT_EQ(http("GET", server_->url("/api/invoices?limit=0"), "", {bearer(a.access_token)}).status,
            422);
  EXPECT_EQ(
      http("GET", server_->url("/api/invoices/not-a-uuid"), "", {bearer(a.access_token)}).status,
      404);
}

TEST_F(Invoices, OneInvoiceAndItsPdfAreTheTenantsOnly) {
  Account a = testkit::sign_up(*server_, "Pdf A");
  Account b = testkit::sign_up(*server_, "Pdf B");
  std::string usd = seed_invoice(a.tenant_id, "HSEA-0042", "usd", 123456);
  std::string yen = seed_invoice(a.tenant_id, "HSEA-0043", "jpy", 4900, "open");

  auto got = http("GET", server_->url("/api/invoices/" + usd), "", {bearer(a.access_token)});
  ASSERT_EQ(got.status, 200) << got.body;
  object inv = json_of(got);
  EXPECT_EQ(str(inv, "number"), "HSEA-0042");
  ASSERT_EQ(inv.at("lines").as_array().size(), 1u);
  EXPECT_EQ(inv.at("lines").as_array()[0].as_object().at("amount").as_int64(), 123456);
  EXPECT_EQ(str(inv.at("customer").as_object(), "name"), "Globex Corporation");

  auto pdf =
      http("GET", server_->url("/api/invoices/" + usd + "/pdf"), "", {bearer(a.access_token)});
  ASSERT_EQ(pdf.status, 200) << pdf.body;
  EXPECT_EQ(pdf.header("content-type"), "application/pdf");
  EXPECT_NE(pdf.header("content-disposition").find("invoice-HSEA-0042.pdf"), std::string::npos);
  std::string text = pdf_text(pdf.body);
  for (const char* expected :
       {"Acme Cloud GmbH", "Hauptstraße 5", "10115 Berlin", "DE123456789", "Globex Corporation",
        "billing@globex.example", "1 Main St", "HSEA-0042", "Pro plan (monthly)", "$1,234.56",
        "$123.45", "$1,358.01", "Paid on", "2026-11-02"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << " not in\n" << text;
  }
  std::string yen_text = pdf_text(
      http("GET", server_->url("/api/invoices/" + yen + "/pdf"), "", {bearer(a.access_token)})
          .body);
  EXPECT_NE(yen_text.find("\xC2\xA5"
                          "5,390"),
            std::string::npos)
      << yen_text;
  EXPECT_NE(yen_text.find("\xC2\xA5"
                          "4,900"),
            std::string::npos)
      << yen_text;

  // Tenant B: 404 for A's invoice and its PDF, with B's own token and with A's tenant named.
  for (const std::string& path : {"/api/invoices/" + usd, "/api/invoices/" + usd + "/pdf"}) {
    auto r = http("GET", server_->url(path), "", {bearer(b.access_token)});
    EXPECT_EQ(r.status, 404) << path << " " << r.body;
    EXPECT_EQ(r.body.find("Globex"), std::string::npos);
    auto named = http("GET", server_->url(path), "",
                      {bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id});
    EXPECT_TRUE(named.status == 403 || named.status == 404) << named.status;
    EXPECT_EQ(named.body.find("%PDF"), std::string::npos);
  }
}

TEST_F(Invoices, MembersWithoutABillingRoleCannotReadInvoices) {
  Account a = testkit::sign_up(*server_, "Roles A");
  Account c = testkit::sign_up(*server_, "Roles C");
  std::string id = seed_invoice(a.tenant_id, "R-1", "usd", 100);
  testkit::add_member(*db_, a.tenant_id, c.user_id, "member");
  std::vector<std::string> as_member{bearer(c.access_token), "X-Tenant-Id: " + a.tenant_id};
  EXPECT_EQ(http("GET", server_->url("/api/invoices"), "", as_member).status, 403);
  EXPECT_EQ(http("GET", server_->url("/api/invoices/" + id + "/pdf"), "", as_member).status, 403);
  sql(db_->admin_url(),
      "UPDATE memberships SET role = 'billing' WHERE tenant_id = $1 AND user_id = $2",
      {a.tenant_id, c.user_id});
  // The role is read per request (cached at most 5 s).
  int status = 0;
  for (int i = 0; i < 70 && status != 200; ++i) {
    status = http("GET", server_->url("/api/invoices/" + id), "", as_member).status;
    if (status != 200) usleep(100 * 1000);
  }
  EXPECT_EQ(status, 200);
}

TEST_F(Invoices, ASuspendedTenantsWritesAnswer402WhileReadsWork) {
  Account a = testkit::sign_up(*server_, "Suspended A");
  Account b = testkit::sign_up(*server_, "Suspended B");
  std::string id = seed_invoice(a.tenant_id, "S-1", "usd", 4900, "open");
  sql(db_->admin_url(),
      "INSERT INTO billing_dunning (tenant_id, invoice_id, past_due_since, suspend_at) "
      "VALUES ($1, $2, now() - interval '8 days', now() - interval '1 day')",
      {a.tenant_id, id});
  auto write = [&](const Account& who) {
    return http("POST", server_->url("/api/api-keys"), R"({"name":"k","scopes":["read"]})",
                {bearer(who.access_token), "Content-Type: application/json"});
  };
  auto refused = write(a);
  EXPECT_EQ(refused.status, 402) << refused.body;
  EXPECT_EQ(str(json_of(refused), "code"), "billing_suspended");
  EXPECT_EQ(refused.header("content-type"), "application/problem+json");
  EXPECT_EQ(http("GET", server_->url("/api/api-keys"), "", {bearer(a.access_token)}).status, 200);
  EXPECT_EQ(http("GET", server_->url("/api/invoices/" + id), "", {bearer(a.access_token)}).status,
            200);
  // Nothing was written.
  EXPECT_EQ(sql(db_->admin_url(), "SELECT count(*) FROM api_keys WHERE tenant_id = $1",
                {a.tenant_id})[0][0],
            "0");
  // Members are the tenant's data like any other ("/api/members" once passed for "/api/me");
  // the caller's own account and the way out (paying: 503 here, no Stripe) stay open.
  auto member = http("PATCH", server_->url("/api/members/" + a.user_id), R"({"role":"admin"})",
                     {bearer(a.access_token), "Content-Type: application/json"});
  EXPECT_EQ(member.status, 402) << member.body;
  EXPECT_EQ(http("PATCH", server_->url("/api/me"), R"({"name":"Still Me"})",
                 {bearer(a.access_token), "Content-Type: application/json"})
                .status,
            200);
  auto pay =
      http("POST", server_->url("/api/invoices/" + id + "/pay"), "", {bearer(a.access_token)});
  EXPECT_NE(pay.status, 402) << pay.body;
  // Another tenant is not affected.
  EXPECT_EQ(write(b).status, 201);
}

// ---------------------------------------------------------------- against the Stripe emulator

// Retries after ~4 s and suspension after ~17 s of real time, so one test sees the whole episode.
class InvoicesStripe : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    sink_ = new testkit::SmtpSink();
    stripe_ = new testkit::StripeEmulator();
    std::map<std::string, std::string> env = stripe_->hsea_env();
    env["HSEA_SMTP_URL"] = sink_->url();
    env["HSEA_MAIL_FROM"] = "billing@mail.hsea.test";
    env["HSEA_JOB_POLL_MS"] = "200";
    env["HSEA_BILLING_RETRY_DAYS"] = "0.00005";  // 4.3 s after the first failure
    env["HSEA_BILLING_GRACE_DAYS"] = "0.0002";   // 17 s
    env["HSEA_BILLING_SELLER_NAME"] = "Acme Cloud GmbH";
    server_ = new testkit::TestServer(*db_, env);
    stripe_->set_webhook_url(server_->url("/api/webhooks/stripe"));
    testkit::RunResult sync = stripe_->sync_plans(*db_);
    ASSERT_EQ(sync.exit_code, 0) << sync.output;
  }
  static void TearDownTestSuite() {
    std::string out = server_->output();
    if (::testing::UnitTest::GetInstance()->failed_test_count() > 0) {
      std::fprintf(stderr, "server output (end):\n%s\n",
                   out.substr(out.size() > 8000 ? out.size() - 8000 : 0).c_str());
    }
    delete server_;
    delete stripe_;
    delete sink_;
    delete db_;
  }
  static testkit::HttpResponse call(const std::string& method, const std::string& path,
                                    const Account& a, const std::string& body = "") {
    std::vector<std::string> headers{bearer(a.access_token)};
    if (!body.empty()) headers.emplace_back("Content-Type: application/json");
    return http(method, server_->url(path), body, headers);
  }
  static object current(const Account& a) {
    auto r = call("GET", "/api/subscriptions/current", a);
    return r.status == 200 ? json_of(r) : object{};
  }
  static boost::json::array invoices(const Account& a) {
    auto r = call("GET", "/api/invoices", a);
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? json_of(r).at("data").as_array() : boost::json::array{};
  }
  static std::size_t mails(const Account& a, const std::string& subject_prefix) {
    return sink_->accepted_for(a.email, subject_prefix).size();
  }
  static std::size_t audits(const Account& a, const std::string& action) {
    return std::stoul(sql(db_->admin_url(),
                          "SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND action = $2",
                          {a.tenant_id, action})[0][0]);
  }
  // A tenant on Starter, paid through Checkout (back to TestServer's HSEA_PUBLIC_URL).
  static Account subscribed(const std::string& org) {
    Account a = testkit::sign_up(*server_, org);
    stripe_->subscribe(*server_, a, "starter");
    EXPECT_TRUE(eventually([&] { return str(current(a), "plan_id") == "starter"; }));
    return a;
  }

  static testkit::TestDatabase* db_;
  static testkit::SmtpSink* sink_;
  static testkit::StripeEmulator* stripe_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* InvoicesStripe::db_ = nullptr;
testkit::SmtpSink* InvoicesStripe::sink_ = nullptr;
testkit::StripeEmulator* InvoicesStripe::stripe_ = nullptr;
testkit::TestServer* InvoicesStripe::server_ = nullptr;

TEST_F(InvoicesStripe, APaidCheckoutIsMirroredOnceWithItsPdfAndMailForItsTenantOnly) {
  Account a = subscribed("Mirror A");
  Account b = testkit::sign_up(*server_, "Mirror B");
  ASSERT_TRUE(eventually([&] { return invoices(a).size() == 1; }));
  object inv = invoices(a)[0].as_object();
  EXPECT_EQ(str(inv, "status"), "paid");
  std::int64_t total = inv.at("total").as_int64();
  EXPECT_GT(total, 0);
  EXPECT_TRUE(str(inv, "number").size() > 0);
  std::string id = str(inv, "id");
  // The PDF says what Stripe charged, in dollars.
  auto pdf = call("GET", "/api/invoices/" + id + "/pdf", a);
  ASSERT_EQ(pdf.status, 200) << pdf.body;
  std::string text = pdf_text(pdf.body);
  char amount[64];
  std::snprintf(amount, sizeof amount, "$%lld.%02lld", static_cast<long long>(total / 100),
                static_cast<long long>(total % 100));
  EXPECT_NE(text.find(amount), std::string::npos) << amount << " not in\n" << text;
  EXPECT_NE(text.find("Acme Cloud GmbH"), std::string::npos) << text;
  EXPECT_NE(text.find(str(inv, "number")), std::string::npos) << text;
  // The invoice mail, once, to the owner.
  ASSERT_TRUE(eventually([&] { return mails(a, "Your HSEA invoice " + str(inv, "number")) == 1; }))
      << sink_->log();

  // Stripe sends invoice.paid again, late and twice: nothing changes.
  boost::json::value events = stripe_->api("GET", "/v1/events?type=invoice.paid&limit=100");
  std::string event_id;
  for (const auto& e : events.at("data").as_array()) {
    if (e.at("data").at("object").at("id").as_string() == str(inv, "stripe_invoice_id")) {
      event_id = std::string(e.at("id").as_string());
    }
  }
  ASSERT_FALSE(event_id.empty());
  stripe_->control("POST", "/events/" + event_id + "/resend", "{}");
  stripe_->control("POST", "/events/" + event_id + "/resend", "{}");
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::size_t copies = 0;
  for (const auto& i : invoices(a)) copies += str(i.as_object(), "id") == id;
  EXPECT_EQ(copies, 1u);
  EXPECT_EQ(mails(a, "Your HSEA invoice " + str(inv, "number")), 1u);
  EXPECT_EQ(audits(a, "invoice.paid"), 1u);

  // Tenant B: none of it.
  EXPECT_TRUE(invoices(b).empty());
  for (const std::string& path : {"/api/invoices/" + id, "/api/invoices/" + id + "/pdf"}) {
    EXPECT_EQ(call("GET", path, b).status, 404) << path;
  }
  EXPECT_EQ(call("POST", "/api/invoices/" + id + "/pay", b).status, 404);
  EXPECT_EQ(call("POST", "/api/invoices/" + id + "/pay", a).status, 409);  // paid already
}

TEST_F(InvoicesStripe, AFailedRenewalIsRetriedThenSuspendsWritesUntilPaid) {
  Account a = subscribed("Dunning A");
  Account b = subscribed("Dunning B");
  std::string customer = str(current(a), "stripe_customer_id");
  stripe_->fail_next_charges(customer, 100);
  stripe_->advance_days(32);  // the renewal's one automatic attempt fails
  ASSERT_TRUE(stripe_->wait_webhooks_idle());

  // Past due, mailed with a link to pay, the open invoice listed with its failed attempt.
  ASSERT_TRUE(eventually([&] { return str(current(a), "status") == "past_due"; }))
      << boost::json::serialize(current(a));
  ASSERT_TRUE(eventually([&] { return mails(a, "Payment failed") >= 1; })) << sink_->log();
  auto mail = sink_->accepted_for(a.email, "Payment failed")[0];
  EXPECT_NE(str(mail, "text").find("/account/billing"), std::string::npos) << str(mail, "text");
  std::string open_id;
  for (const auto& i : invoices(a)) {
    if (str(i.as_object(), "status") == "open") open_id = str(i.as_object(), "id");
  }
  ASSERT_FALSE(open_id.empty());
  EXPECT_EQ(audits(a, "subscription.past_due"), 1u);
  // Within the grace period writes still work.
  auto key = call("POST", "/api/api-keys", a, R"({"name":"in grace","scopes":["read"]})");
  EXPECT_EQ(key.status, 201) << key.body;

  // The retry (HSEA_BILLING_RETRY_DAYS) asks Stripe to pay, fails again and mails again.
  ASSERT_TRUE(eventually([&] { return mails(a, "Payment failed") >= 2; })) << sink_->log();
  bool retried = false;
  for (const auto& r : stripe_->requests()) {
    const auto& o = r.as_object();
    if (str(o, "path").ends_with("/pay") &&
        str(o, "idempotency_key").starts_with("invoice-retry:")) {
      retried = true;
    }
  }
  EXPECT_TRUE(retried);

  // After the grace period: writes 402, reads 200; tenant B is not affected.
  ASSERT_TRUE(eventually([&] {
    return call("POST", "/api/api-keys", a, R"({"name":"k","scopes":["read"]})").status == 402;
  }));
  auto refused = call("PATCH", "/api/me", a, R"({"name":"still me"})");
  EXPECT_EQ(refused.status, 200) << "the caller's own account stays writable: " << refused.body;
  auto suspended = call("POST", "/api/api-keys", a, R"({"name":"k","scopes":["read"]})");
  EXPECT_EQ(str(json_of(suspended), "code"), "billing_suspended");
  EXPECT_EQ(call("GET", "/api/api-keys", a).status, 200);
  EXPECT_EQ(call("GET", "/api/invoices/" + open_id, a).status, 200);
  EXPECT_EQ(call("POST", "/api/api-keys", b, R"({"name":"b","scopes":["read"]})").status, 201);
  ASSERT_TRUE(eventually([&] { return audits(a, "subscription.suspended") == 1; }));

  // Pay now with the card still failing: 402 payment_failed, still suspended.
  auto declined = call("POST", "/api/invoices/" + open_id + "/pay", a);
  EXPECT_EQ(declined.status, 402) << declined.body;
  EXPECT_EQ(str(json_of(declined), "code"), "payment_failed");
  // Tenant B cannot pay (or see) A's invoice.
  EXPECT_EQ(call("POST", "/api/invoices/" + open_id + "/pay", b).status, 404);

  // A working card: paid at once, writes work again at once.
  stripe_->succeed_charges(customer);
  auto paid = call("POST", "/api/invoices/" + open_id + "/pay", a);
  ASSERT_EQ(paid.status, 200) << paid.body;
  EXPECT_EQ(call("POST", "/api/api-keys", a, R"({"name":"after","scopes":["read"]})").status, 201);
  object inv = json_of(call("GET", "/api/invoices/" + open_id, a));
  EXPECT_EQ(str(inv, "status"), "paid");
  EXPECT_GE(inv.at("attempt_count").as_int64(), 3);
  EXPECT_EQ(audits(a, "subscription.restored"), 1u);
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  EXPECT_TRUE(eventually([&] { return str(current(a), "status") == "active"; }));
  // Events for the tenant's webhooks.
  auto events = call("GET", "/api/events?type=invoice.payment_failed", a);
  ASSERT_EQ(events.status, 200);
  EXPECT_GE(json_of(events).at("data").as_array().size(), 2u);
  EXPECT_EQ(json_of(call("GET", "/api/events?type=invoice.payment_failed", b))
                .at("data")
                .as_array()
                .size(),
            0u);
}

// Stripe embeds only the first page of an invoice's lines (has_more): HSEA pages through the
// rest and mirrors every line. The emulator's pages are made small (3 embedded, 4 a page) so
// 13 lines take the embedded page and three more requests.
TEST_F(InvoicesStripe, EveryLineOfALongInvoiceIsMirroredPageByPage) {
  Account a = subscribed("Lines A");
  Account b = testkit::sign_up(*server_, "Lines B");
  object sub = current(a);
  std::string customer = str(sub, "stripe_customer_id");
  std::string subscription = str(sub, "stripe_subscription_id");
  ASSERT_FALSE(subscription.empty());
  for (int i = 1; i <= 12; ++i) {
    stripe_->api("POST", "/v1/invoiceitems",
                 "customer=" + customer + "&subscription=" + subscription +
                     "&currency=usd&amount=" + std::to_string(100 * i) +
                     "&description=Support+hour+" + std::to_string(i));
  }
  stripe_->control("POST", "/lists", R"({"embedded_invoice_lines":3,"max_page":4})");
  stripe_->advance_days(32);  // the renewal invoices the 12 items and the next period
  ASSERT_TRUE(stripe_->wait_webhooks_idle());
  std::string id;
  ASSERT_TRUE(eventually([&] {
    for (const auto& i : invoices(a)) {
      if (str(i.as_object(), "billing_reason") == "subscription_cycle" &&
          str(i.as_object(), "status") == "paid") {
        id = str(i.as_object(), "id");
      }
    }
    return !id.empty();
  }));
  stripe_->control("POST", "/lists", R"({"embedded_invoice_lines":10,"max_page":100})");
  object inv = json_of(call("GET", "/api/invoices/" + id, a));
  const boost::json::array& lines = inv.at("lines").as_array();
  ASSERT_EQ(lines.size(), 13u) << boost::json::serialize(inv);
  std::int64_t sum = 0;
  std::set<std::string> descriptions;
  for (const auto& l : lines) {
    sum += l.at("amount").as_int64();
    descriptions.insert(str(l.as_object(), "description"));
  }
  EXPECT_EQ(sum, inv.at("total").as_int64());
  // The items (1..12 dollars) and Starter's month.
  EXPECT_EQ(sum, 7800 + sub.at("plan").at("monthly_amount").as_int64());
  for (int i = 1; i <= 12; ++i) {
    EXPECT_TRUE(descriptions.contains("Support hour " + std::to_string(i))) << i;
  }
  // Read through Stripe's lines list after the embedded page, a page at a time.
  std::size_t pages = 0;
  for (const auto& r : stripe_->requests()) {
    const auto& o = r.as_object();
    if (str(o, "path") == "/v1/invoices/" + str(inv, "stripe_invoice_id") + "/lines") ++pages;
  }
  EXPECT_GE(pages, 3u);
  // The PDF prints the last line too.
  auto pdf = call("GET", "/api/invoices/" + id + "/pdf", a);
  ASSERT_EQ(pdf.status, 200);
  EXPECT_NE(pdf_text(pdf.body).find("Support hour 12"), std::string::npos);
  // Tenant B sees none of it.
  EXPECT_EQ(call("GET", "/api/invoices/" + id, b).status, 404);
  EXPECT_TRUE(invoices(b).empty());
}

}  // namespace
}  // namespace hsea
