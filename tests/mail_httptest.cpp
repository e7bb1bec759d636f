// E-mail through the real server to a real SMTP server (npm smtp-server, read with mailparser:
// tests/node/smtp-sink.js): the welcome mail on sign-up, retries, a worker killed
// mid-delivery, template previews, branding and its validation, and two tenants.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "testkit/smtp_sink.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::http;
using testkit::json_of;
using testkit::sql;
using testkit::str;
using namespace std::chrono_literals;

using testkit::bearer;
using testkit::SmtpSink;

std::map<std::string, std::string> mail_env(const SmtpSink& sink) {
  return {{"HSEA_SMTP_URL", sink.url()},
          {"HSEA_MAIL_FROM", "hello@mail.hsea.test"},
          {"HSEA_MAIL_PRODUCT_NAME", "Acme Cloud"},
          {"HSEA_MAIL_PRIMARY_COLOR", "#123ABC"},
          {"HSEA_MAIL_FOOTER", "Acme Cloud Ltd, 1 Main Street"},
          {"HSEA_PUBLIC_URL", "http://app.hsea.test:8080"}};
}

class MailApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    sink_ = new SmtpSink();
    server_ = new testkit::TestServer(*db_, mail_env(*sink_));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete sink_;
    delete db_;
  }
  static testkit::HttpResponse call(const std::string& method, const std::string& path,
                                    const std::string& token, const std::string& body = "") {
    std::vector<std::string> headers{bearer(token)};
    if (!body.empty()) headers.push_back("Content-Type: application/json");
    return http(method, server_->url(path), body, headers);
  }
  static testkit::TestDatabase* db_;
  static SmtpSink* sink_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* MailApi::db_ = nullptr;
SmtpSink* MailApi::sink_ = nullptr;
testkit::TestServer* MailApi::server_ = nullptr;

TEST_F(MailApi, SignUpSendsTheWelcomeMailWithBothPartsBrandingAndAMessageId) {
  Account a = testkit::sign_up(*server_, "Welcome Co");
  sink_->wait_for(a.email, 2);  // the welcome and the verification link
  auto mails = sink_->accepted_for(a.email, "Welcome");
  ASSERT_EQ(mails.size(), 1u) << sink_->log();
  const object& m = mails[0];
  EXPECT_EQ(str(m, "mail_from"), "hello@mail.hsea.test");
  EXPECT_EQ(str(m, "user"), "mailer") << "AUTH from the URL's user:password";
  EXPECT_EQ(str(m, "from"), "\"Acme Cloud\" <hello@mail.hsea.test>");
  EXPECT_EQ(str(m, "to"), "\"User of Welcome Co\" <" + a.email + ">");
  EXPECT_EQ(str(m, "subject"), "Welcome to Acme Cloud, User of Welcome Co");
  EXPECT_TRUE(
      std::regex_match(str(m, "message_id"), std::regex("<[0-9a-f-]{36}@app\\.hsea\\.test>")))
      << str(m, "message_id");
  EXPECT_FALSE(str(m, "date").empty());
  EXPECT_EQ(m.at("headers").as_object().at("mime-version").as_string(), "1.0");
  EXPECT_EQ(m.at("content_type").as_string(), "multipart/alternative");
  std::string html = str(m, "html"), text = str(m, "text");
  EXPECT_NE(html.find(a.tenant_name), std::string::npos) << html;
  EXPECT_NE(html.find("#123abc"), std::string::npos) << "the primary colour";
  EXPECT_NE(html.find("Acme Cloud Ltd, 1 Main Street"), std::string::npos);
  EXPECT_NE(html.find("http://app.hsea.test:8080"), std::string::npos);
  EXPECT_NE(text.find(a.tenant_name), std::string::npos) << text;
  EXPECT_NE(text.find("Acme Cloud Ltd, 1 Main Street"), std::string::npos);
  EXPECT_EQ(text.find("<"), std::string::npos) << "the text part has no HTML: " << text;
  // The outbox row: sent, with the Message-ID that went out.
  auto row = sql(db_->admin_url(),
                 "SELECT status, message_id, attempts, sent_at IS NOT NULL FROM mail_messages "
                 "WHERE tenant_id = $1 AND template = 'welcome'",
                 {a.tenant_id});
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0], "sent");
  EXPECT_EQ(row[0][1], str(m, "message_id"));
  EXPECT_EQ(row[0][2], "1");
  EXPECT_EQ(row[0][3], "t");
  auto metrics = http("GET", server_->url("/metrics"));
  EXPECT_NE(metrics.body.find("hsea_mail_sent_total"), std::string::npos);
}

TEST_F(MailApi, TemplatesArePreviewedWithSampleDataAndTheTenantsBranding) {
  Account a = testkit::sign_up(*server_, "Preview Co");
  auto list = call("GET", "/api/email/templates", a.access_token);
  ASSERT_EQ(list.status, 200) << list.body;
  std::vector<std::string> names;
  object listed = json_of(list);
  for (auto& t : listed.at("data").as_array()) names.push_back(str(t.as_object(), "name"));
  EXPECT_EQ(names, (std::vector<std::string>{
                       "welcome", "email_verification", "password_reset", "email_change",
                       "email_change_notice", "password_changed", "invitation", "invoice",
                       "payment_failed", "usage_warning", "trial_ended", "webhook_disabled"}));
  // The operator's alert is platform mail: not a tenant's template.
  EXPECT_EQ(call("GET", "/api/email/templates/rate_limit_alert/preview", a.access_token).status,
            404);
  auto patched = call("PATCH", "/api/tenant/branding", a.access_token,
                      R"({"product_name":"Preview <Brand>","primary_color":"#AA3300",)"
                      R"("logo_url":"https://cdn.example.com/logo.png","footer":"Footer & co"})");
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(str(json_of(patched), "primary_color"), "#aa3300");
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    auto preview = call("GET", "/api/email/templates/" + name + "/preview", a.access_token);
    ASSERT_EQ(preview.status, 200) << preview.body;
    object p = json_of(preview);
    EXPECT_FALSE(str(p, "subject").empty());
    EXPECT_NE(str(p, "html").find("#aa3300"), std::string::npos);
    EXPECT_NE(str(p, "html").find("https://cdn.example.com/logo.png"), std::string::npos);
    EXPECT_NE(str(p, "html").find("Preview &lt;Brand&gt;"), std::string::npos);
    EXPECT_NE(str(p, "html").find("Footer &amp; co"), std::string::npos);
    EXPECT_NE(str(p, "text").find("Preview <Brand>"), std::string::npos);
    EXPECT_NE(str(p, "text").find("Footer & co"), std::string::npos);
  }
  auto invoice = json_of(call("GET", "/api/email/templates/invoice/preview", a.access_token));
  EXPECT_NE(str(invoice, "text").find("INV-2026-0042"), std::string::npos);
  EXPECT_NE(str(invoice, "html").find(a.tenant_name), std::string::npos);
  EXPECT_EQ(call("GET", "/api/email/templates/nope/preview", a.access_token).status, 404);
  // Members are not admins.
  Account m = testkit::sign_up(*server_, "Preview Member");
  testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  auto as_member = http("GET", server_->url("/api/email/templates"), "",
                        {bearer(m.access_token), "X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(as_member.status, 403) << as_member.body;
}

TEST_F(MailApi, BadBrandingIsA422ProblemAndChangesNothing) {
  Account a = testkit::sign_up(*server_, "Branding Co");
  auto before = call("GET", "/api/tenant/branding", a.access_token);
  ASSERT_EQ(before.status, 200);
  EXPECT_EQ(str(json_of(before), "product_name"), "Acme Cloud") << "the default";
  EXPECT_EQ(str(json_of(before), "primary_color"), "#123abc");
  const std::vector<std::string> bad{R"({"primary_color":"red"})",
                                     R"({"primary_color":"#12345"})",
                                     R"({"logo_url":"http://cdn.example.com/logo.png"})",
                                     R"({"logo_url":"https://"})",
                                     R"({"logo_url":"https://cdn.example.com/a b.png"})",
                                     R"j({"logo_url":"javascript:alert(1)"})j",
                                     R"({"product_name":")" + std::string(101, 'x') + R"("})",
                                     R"({"footer":")" + std::string(501, 'x') + R"("})",
                                     R"({"unknown":"x"})",
                                     R"({})",
                                     R"({"primary_color":"#00ff00","logo_url":"ftp://x"})"};
  for (const std::string& body : bad) {
    SCOPED_TRACE(body);
    auto r = call("PATCH", "/api/tenant/branding", a.access_token, body);
    EXPECT_EQ(r.status, 422) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(call("GET", "/api/tenant/branding", a.access_token).body, before.body);
  }
  auto set = call("PATCH", "/api/tenant/branding", a.access_token, R"({"product_name":"Mine"})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(str(json_of(set), "product_name"), "Mine");
  EXPECT_EQ(str(json_of(set), "primary_color"), "#123abc") << "untouched fields keep theirs";
  auto reset = call("PATCH", "/api/tenant/branding", a.access_token, R"({"product_name":""})");
  EXPECT_EQ(str(json_of(reset), "product_name"), "Acme Cloud") << "\"\" resets to the default";
}

TEST_F(MailApi, ATenantNeverSeesAnotherTenantsBrandingOrMail) {
  Account a = testkit::sign_up(*server_, "Isolation A");
  Account b = testkit::sign_up(*server_, "Isolation B");
  ASSERT_EQ(call("PATCH", "/api/tenant/branding", a.access_token,
                 R"({"product_name":"Secret A Brand","primary_color":"#abcdef"})")
                .status,
            200);
  auto b_branding = call("GET", "/api/tenant/branding", b.access_token);
  EXPECT_EQ(str(json_of(b_branding), "product_name"), "Acme Cloud");
  auto b_preview = call("GET", "/api/email/templates/welcome/preview", b.access_token);
  EXPECT_EQ(b_preview.body.find("Secret A Brand"), std::string::npos);
  EXPECT_EQ(b_preview.body.find("#abcdef"), std::string::npos);
  // B naming A's tenant gets nothing of A's.
  for (std::string path :
       {"/api/tenant/branding", "/api/email/templates/welcome/preview", "/api/dev/mail"}) {
    auto r = http("GET", server_->url(path), "",
                  {bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id});
    EXPECT_TRUE(r.status == 403 || r.status == 404) << path << " " << r.status;
    EXPECT_EQ(r.body.find("Secret A Brand"), std::string::npos);
  }
  auto r = http(
      "PATCH", server_->url("/api/tenant/branding"), R"({"product_name":"Hijack"})",
      {bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id, "Content-Type: application/json"});
  EXPECT_TRUE(r.status == 403 || r.status == 404) << r.status;
  EXPECT_EQ(str(json_of(call("GET", "/api/tenant/branding", a.access_token)), "product_name"),
            "Secret A Brand");
}

TEST_F(MailApi, DevMailIsNotFoundOutsideDevelopment) {
  Account a = testkit::sign_up(*server_, "Not Dev");
  for (const char* path : {"/api/dev/mail", "/dev/mail"}) {
    auto r = call("GET", path, a.access_token);
    EXPECT_EQ(r.status, 404) << path << ": " << r.body;
    EXPECT_EQ(r.body.find("Welcome"), std::string::npos);
  }
}

TEST(MailDelivery, ARefusedAttemptIsRetriedAndArrivesOnceWithTheSameMessageId) {
  testkit::TestDatabase db;
  SmtpSink sink({"--refuse", "1", "--refuse-code", "451"});
  testkit::TestServer server(db, mail_env(sink));
  Account a = testkit::sign_up(server, "Retry Co");
  // Sign-up mails twice (welcome, verification link): whichever came first was refused once.
  auto mails = sink.wait_for(a.email, 2, 40s);
  ASSERT_EQ(mails.size(), 2u) << sink.log();
  std::this_thread::sleep_for(1s);
  auto lines = sink.lines();
  ASSERT_EQ(lines.size(), 3u) << "one refusal, two deliveries";
  EXPECT_EQ(lines[0].at("refused").as_int64(), 451);
  std::string refused = str(lines[0], "message_id");
  EXPECT_EQ(sink.accepted_for(a.email).size(), 2u);
  auto row = sql(db.admin_url(),
                 "SELECT status, attempts, message_id FROM mail_messages WHERE tenant_id = $1 "
                 "AND message_id = $2",
                 {a.tenant_id, refused});
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0][0], "sent");
  EXPECT_EQ(row[0][1], "2");
  int arrived = 0;
  for (const auto& m : mails) arrived += str(m, "message_id") == refused ? 1 : 0;
  EXPECT_EQ(arrived, 1) << "the refused message arrived once, with the same Message-ID";
}

TEST(MailDelivery, AServerKilledMidDeliveryLosesNoMail) {
  testkit::TestDatabase db;
  // The sink holds each message 3 s before it answers DATA: the server dies in between.
  SmtpSink sink({"--delay-ms", "3000"});
  auto env = mail_env(sink);
  env["HSEA_JOB_LEASE_SECONDS"] = "2";
  auto first = std::make_unique<testkit::TestServer>(db, env);
  Account a = testkit::sign_up(*first, "Kill Co");
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (sink.log().find("receiving") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_NE(sink.log().find("receiving"), std::string::npos) << "no delivery started";
  first->stop(SIGKILL);
  first.reset();
  EXPECT_EQ(sql(db.admin_url(),
                "SELECT status FROM mail_messages WHERE tenant_id = $1 AND template = 'welcome'",
                {a.tenant_id})[0][0],
            "queued");
  testkit::TestServer second(db, env);
  deadline = std::chrono::steady_clock::now() + 40s;
  std::vector<std::vector<std::string>> row;
  while (std::chrono::steady_clock::now() < deadline) {
    row = sql(db.admin_url(),
              "SELECT status, message_id FROM mail_messages WHERE tenant_id = $1 "
              "AND template = 'welcome'",
              {a.tenant_id});
    if (row[0][0] == "sent") break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(row[0][0], "sent") << second.output();
  std::this_thread::sleep_for(3500ms);  // a first copy the sink still held arrives too
  auto mails = sink.accepted_for(a.email, "Welcome");
  ASSERT_GE(mails.size(), 1u);
  EXPECT_LE(mails.size(), 2u) << "sent at most once more";
  for (const auto& m : mails) EXPECT_EQ(str(m, "message_id"), row[0][1]);
}

TEST(MailDevelopment, WithoutSmtpMessagesAreStoredAndEachTenantReadsOnlyItsOwn) {
  testkit::TestDatabase db;
  testkit::TestServer server(db, {{"HSEA_ENV", "development"}});
  Account a = testkit::sign_up(server, "Dev A");
  Account b = testkit::sign_up(server, "Dev B");
  auto list_of = [&](const Account& who) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    object body;
    while (std::chrono::steady_clock::now() < deadline) {
      auto r = http("GET", server.url("/api/dev/mail"), "", {bearer(who.access_token)});
      EXPECT_EQ(r.status, 200) << r.body;
      body = json_of(r);
      if (body.at("data").as_array().size() >= 2) break;  // welcome, verification link
      std::this_thread::sleep_for(100ms);
    }
    return body;
  };
  for (const Account* who : {&a, &b}) {
    object body = list_of(*who);
    auto& data = body.at("data").as_array();
    ASSERT_EQ(data.size(), 2u) << boost::json::serialize(body);
    // The verification link is mailed in the sign-up's transaction, the welcome by a job.
    EXPECT_EQ(str(data[0].as_object(), "template"), "email_verification");
    const object& m = data[1].as_object();
    EXPECT_EQ(str(m, "status"), "stored");
    EXPECT_EQ(str(m, "template"), "welcome");
    EXPECT_NE(str(m, "to").find(who->email), std::string::npos);
    EXPECT_NE(str(m, "html").find(who->tenant_name), std::string::npos);
    const Account* other = who == &a ? &b : &a;
    EXPECT_EQ(boost::json::serialize(body).find(other->email), std::string::npos);
    EXPECT_EQ(boost::json::serialize(body).find(other->tenant_name), std::string::npos);
  }
  EXPECT_EQ(sql(db.admin_url(), "SELECT count(*) FROM jobs WHERE kind = 'mail.deliver'")[0][0], "0")
      << "nothing to deliver without SMTP";
  // The page a developer opens: the tenant's message, its HTML escaped into a sandboxed frame.
  auto page = http("GET", server.url("/dev/mail"), "", {bearer(a.access_token)});
  ASSERT_EQ(page.status, 200) << page.body;
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.header("content-security-policy").find("default-src 'none'"), std::string::npos);
  EXPECT_NE(page.body.find("<iframe sandbox"), std::string::npos);
  EXPECT_NE(page.body.find(a.email), std::string::npos);
  EXPECT_EQ(page.body.find(b.email), std::string::npos) << "tenant B's mail on A's page";
  EXPECT_EQ(page.body.find("<h1 style"), std::string::npos) << "the mail's HTML is not escaped";
}

}  // namespace
}  // namespace hsea
