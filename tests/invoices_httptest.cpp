// Invoices and dunning from outside (HSEA-028, HSEA-030): the real `hsea serve`, two tenants.
// The listing, one invoice, its PDF read back with pdftotext, who may read them, and the 402 a
// suspended tenant's writes get while its reads keep working.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <set>

#include "core/ids.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::http;
using testkit::json_of;
using testkit::sql;
using testkit::str;

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token; }

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
  // Another tenant is not affected.
  EXPECT_EQ(write(b).status, 201);
}

}  // namespace
}  // namespace hsea
