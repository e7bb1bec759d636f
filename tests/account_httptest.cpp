// Account flows through the real server and a real SMTP server (HSEA-015, HSEA-016): the
// verification link mailed at sign-up, password reset and change, e-mail change; each token
// followed from the mail that carried it, refused when replayed, expired, forged, for another
// purpose or another account, and refused without changing anything.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <regex>
#include <thread>

#include "core/crypto.hpp"
#include "core/ids.hpp"
#include "testkit/smtp_sink.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::SmtpSink;
using testkit::sql;
using testkit::str;
using namespace std::chrono_literals;

constexpr const char* kPublicUrl = "http://app.hsea.test:8080";
const std::string kNewPassword = "a brand new passphrase 2026";

std::map<std::string, std::string> env_for(const SmtpSink& sink) {
  return {{"HSEA_SMTP_URL", sink.url()},
          {"HSEA_MAIL_FROM", "hello@mail.hsea.test"},
          {"HSEA_MAIL_PRODUCT_NAME", "Acme Cloud"},
          {"HSEA_PUBLIC_URL", kPublicUrl}};
}

// The token of the link to `page` in a delivered mail's text part ("" when there is none).
std::string token_in(const object& mail, const std::string& page) {
  static const std::regex kLink(R"(http://app\.hsea\.test:8080/([a-z-]+)\?token=([0-9a-f]{64}))");
  std::string text = str(mail, "text");
  for (std::sregex_iterator it(text.begin(), text.end(), kLink), end; it != end; ++it) {
    if ((*it)[1] == page) return (*it)[2];
  }
  return "";
}

class AccountFlows : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    sink_ = new SmtpSink();
    server_ = new testkit::TestServer(*db_, env_for(*sink_));
  }
  static void TearDownTestSuite() {
    delete server_;
    delete sink_;
    delete db_;
  }
  static HttpResponse post(const std::string& path, const std::string& body,
                           const std::string& access_token = "") {
    std::vector<std::string> headers{"Content-Type: application/json"};
    if (!access_token.empty()) headers.push_back(bearer(access_token));
    return http("POST", server_->url(path), body, headers);
  }
  static HttpResponse get(const std::string& path, const std::string& access_token) {
    return http("GET", server_->url(path), "", {bearer(access_token)});
  }
  static std::string token_body(const std::string& token) {
    return boost::json::serialize(object{{"token", token}});
  }
  // The newest mail to `rcpt` whose subject starts with `subject`, waiting for the `count`th.
  static object mail(const std::string& rcpt, const std::string& subject, std::size_t count = 1) {
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto found = sink_->accepted_for(rcpt, subject);
      if (found.size() >= count) return found.back();
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "no mail \"" << subject << "\" #" << count << " to " << rcpt << "\n"
                  << sink_->log();
    return {};
  }
  static bool verified(const Account& a) {
    return json_of(get("/api/me", a.access_token)).at("email_verified").as_bool();
  }
  static std::size_t audited(const Account& a, const std::string& action) {
    auto r = get("/api/audit-logs?action=" + action, a.access_token);
    EXPECT_EQ(r.status, 200) << r.body;
    return json_of(r).at("data").as_array().size();
  }
  static void expect_problem(const HttpResponse& r, int status, const std::string& code) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(str(json_of(r), "code"), code) << r.body;
  }
  static HttpResponse login(const std::string& email, const std::string& password) {
    return post("/api/auth/login",
                boost::json::serialize(object{{"email", email}, {"password", password}}));
  }
  static testkit::TestDatabase* db_;
  static SmtpSink* sink_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* AccountFlows::db_ = nullptr;
SmtpSink* AccountFlows::sink_ = nullptr;
testkit::TestServer* AccountFlows::server_ = nullptr;

// ---------------------------------------------------------------------------- verification

TEST_F(AccountFlows, SignUpMailsAVerificationLinkThatVerifiesOnce) {
  Account a = testkit::sign_up(*server_, "Verify Co");
  EXPECT_FALSE(verified(a));
  object m = mail(a.email, "Confirm your e-mail address");
  std::string token = token_in(m, "verify-email");
  ASSERT_EQ(token.size(), 64u) << str(m, "text");
  auto stored = testkit::stored_mail_to(*db_, a.email, "email_verification");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].tenant_id, a.tenant_id) << "sent in the sign-up's tenant, with its branding";
  // Only the token's SHA-256 is stored.
  EXPECT_EQ(sql(db_->admin_url(), "SELECT count(*) FROM account_tokens WHERE token_hash = $1",
                {core::sha256_hex(token)})[0][0],
            "1");
  EXPECT_EQ(sql(db_->admin_url(), "SELECT count(*) FROM account_tokens WHERE token_hash = $1",
                {token})[0][0],
            "0");
  auto ok = post("/api/auth/verify-email", token_body(token));
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(str(json_of(ok), "email"), a.email);
  EXPECT_TRUE(verified(a));
  EXPECT_EQ(audited(a, "user.email_verified"), 1u);
  // Replayed: refused, audited.
  expect_problem(post("/api/auth/verify-email", token_body(token)), 400, "token_invalid");
  EXPECT_EQ(audited(a, "auth.token_refused"), 1u);
  // Verified accounts get no new link.
  expect_problem(post("/api/auth/verify-email/resend", "", a.access_token), 409, "conflict");
}

TEST_F(AccountFlows, ForgedExpiredAndMisusedTokensAreRefusedAndChangeNothing) {
  Account a = testkit::sign_up(*server_, "Refuse Co");
  std::string token = token_in(mail(a.email, "Confirm your e-mail address"), "verify-email");
  ASSERT_FALSE(token.empty());
  expect_problem(post("/api/auth/verify-email", token_body(core::random_hex(32))), 400,
                 "token_invalid");
  expect_problem(post("/api/auth/verify-email", token_body("not-a-token")), 400, "token_invalid");
  expect_problem(post("/api/auth/verify-email", token_body(token + "0")), 400, "token_invalid");
  // A verification token is no reset token: the password stays.
  auto misuse = post("/api/auth/password/reset",
                     boost::json::serialize(object{{"token", token}, {"password", kNewPassword}}));
  expect_problem(misuse, 400, "token_invalid");
  EXPECT_EQ(login(a.email, a.password).status, 200);
  EXPECT_EQ(login(a.email, kNewPassword).status, 401);
  // Nor an e-mail change token.
  expect_problem(post("/api/me/email/confirm", token_body(token), a.access_token), 400,
                 "token_invalid");
  // Expired.
  sql(db_->admin_url(),
      "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
      {core::sha256_hex(token)});
  expect_problem(post("/api/auth/verify-email", token_body(token)), 410, "token_expired");
  EXPECT_FALSE(verified(a));
  EXPECT_EQ(sql(db_->admin_url(),
                "SELECT count(*) FROM account_tokens WHERE used_at IS NOT NULL "
                "AND user_id = $1",
                {a.user_id})[0][0],
            "0")
      << "no refusal spent a token";
  EXPECT_GE(audited(a, "auth.token_refused"), 3u);
  // Bad bodies.
  for (std::string body : {"{}", R"({"token":5})", R"({"token":""})", R"({"token":"x","y":1})"}) {
    SCOPED_TRACE(body);
    auto r = post("/api/auth/verify-email", body);
    EXPECT_EQ(r.status, 422) << r.body;
  }
}

TEST_F(AccountFlows, ResendMailsANewLinkAndIsRateLimitedPerUser) {
  Account a = testkit::sign_up(*server_, "Resend Co");
  mail(a.email, "Confirm your e-mail address");
  for (int i = 0; i < 5; ++i) {
    auto r = post("/api/auth/verify-email/resend", "", a.access_token);
    ASSERT_EQ(r.status, 202) << i << " " << r.body;
  }
  auto refused = post("/api/auth/verify-email/resend", "", a.access_token);
  expect_problem(refused, 429, "rate_limited");
  EXPECT_FALSE(refused.header("retry-after").empty());
  object newest = mail(a.email, "Confirm your e-mail address", 6);
  std::string token = token_in(newest, "verify-email");
  ASSERT_EQ(post("/api/auth/verify-email", token_body(token)).status, 200);
  EXPECT_TRUE(verified(a));
  // Another user's budget is their own; API keys cannot ask.
  Account b = testkit::sign_up(*server_, "Resend Other");
  EXPECT_EQ(post("/api/auth/verify-email/resend", "", b.access_token).status, 202);
  EXPECT_EQ(post("/api/auth/verify-email/resend", "").status, 401);
}

TEST_F(AccountFlows, ConcurrentUsesOfOneTokenHaveExactlyOneWinner) {
  Account a = testkit::sign_up(*server_, "Race Co");
  std::string token = token_in(mail(a.email, "Confirm your e-mail address"), "verify-email");
  ASSERT_FALSE(token.empty());
  std::atomic<int> won{0}, refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      int status = post("/api/auth/verify-email", token_body(token)).status;
      (status == 200 ? won : refused)++;
      EXPECT_TRUE(status == 200 || status == 400) << status;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(refused.load(), 7);
  EXPECT_EQ(audited(a, "user.email_verified"), 1u);
}

// --------------------------------------------------------------------------- password reset

TEST_F(AccountFlows, ResetSetsThePasswordOnceEndsEverySessionAndVerifiesTheAddress) {
  Account a = testkit::sign_up(*server_, "Reset Co");
  auto second = login(a.email, a.password);
  ASSERT_EQ(second.status, 200);
  std::string second_refresh = str(json_of(second), "refresh_token");
  EXPECT_FALSE(verified(a));
  auto forgot = post("/api/auth/password/forgot",
                     boost::json::serialize(object{{"email", "  " + a.email + " "}}));
  EXPECT_EQ(forgot.status, 422) << "the address as sign-up checks it: " << forgot.body;
  std::string upper = a.email;
  std::ranges::transform(upper, upper.begin(), [](unsigned char c) { return std::toupper(c); });
  forgot = post("/api/auth/password/forgot", boost::json::serialize(object{{"email", upper}}));
  ASSERT_EQ(forgot.status, 202) << forgot.body;
  object m = mail(a.email, "Reset your");
  std::string token = token_in(m, "reset-password");
  ASSERT_EQ(token.size(), 64u) << str(m, "text");
  EXPECT_NE(str(m, "text").find("60 minutes"), std::string::npos);
  // A weak password is refused and spends nothing.
  auto weak = post("/api/auth/password/reset",
                   boost::json::serialize(object{{"token", token}, {"password", "password"}}));
  EXPECT_EQ(weak.status, 422) << weak.body;
  EXPECT_EQ(login(a.email, a.password).status, 200);
  auto reset = post("/api/auth/password/reset",
                    boost::json::serialize(object{{"token", token}, {"password", kNewPassword}}));
  ASSERT_EQ(reset.status, 204) << reset.body;
  // Every session and refresh token ended at once.
  EXPECT_EQ(get("/api/me", a.access_token).status, 401);
  for (const std::string& refresh : {a.refresh_token, second_refresh}) {
    auto r = post("/api/auth/refresh", boost::json::serialize(object{{"refresh_token", refresh}}));
    EXPECT_EQ(r.status, 401) << r.body;
  }
  EXPECT_EQ(login(a.email, a.password).status, 401);
  auto fresh = login(a.email, kNewPassword);
  ASSERT_EQ(fresh.status, 200) << fresh.body;
  Account now = a;
  now.access_token = str(json_of(fresh), "access_token");
  EXPECT_TRUE(verified(now)) << "the reset proved the address";
  EXPECT_EQ(audited(now, "auth.password_reset"), 1u);
  EXPECT_EQ(audited(now, "auth.password_reset_requested"), 1u);
  mail(a.email, "Your Acme Cloud password was changed");
  // Replayed.
  auto again = post("/api/auth/password/reset",
                    boost::json::serialize(object{{"token", token}, {"password", a.password}}));
  expect_problem(again, 400, "token_invalid");
  EXPECT_EQ(login(a.email, kNewPassword).status, 200);
}

TEST_F(AccountFlows, ResetLinksExpireAndDieWithTheAddressTheyWereMailedTo) {
  Account a = testkit::sign_up(*server_, "Expiry Co");
  std::string forgot = boost::json::serialize(object{{"email", a.email}});
  ASSERT_EQ(post("/api/auth/password/forgot", forgot).status, 202);
  std::string expired = token_in(mail(a.email, "Reset your"), "reset-password");
  ASSERT_EQ(post("/api/auth/password/forgot", forgot).status, 202);
  std::string moved = token_in(mail(a.email, "Reset your", 2), "reset-password");
  ASSERT_FALSE(expired.empty());
  ASSERT_NE(expired, moved);
  sql(db_->admin_url(),
      "UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
      {core::sha256_hex(expired)});
  auto reset = [&](const std::string& token) {
    return post("/api/auth/password/reset",
                boost::json::serialize(object{{"token", token}, {"password", kNewPassword}}));
  };
  expect_problem(reset(expired), 410, "token_expired");
  // The account moves to another address: a link mailed to the old one no longer works.
  std::string target = "elsewhere-" + core::random_hex(4) + "@example.com";
  ASSERT_EQ(post("/api/me/email",
                 boost::json::serialize(object{{"email", target}, {"password", a.password}}),
                 a.access_token)
                .status,
            202);
  std::string change = token_in(mail(target, "Confirm your new e-mail address"), "confirm-email");
  ASSERT_EQ(post("/api/me/email/confirm", token_body(change), a.access_token).status, 200);
  expect_problem(reset(moved), 400, "token_invalid");
  EXPECT_EQ(login(target, a.password).status, 200) << "the password never changed";
  EXPECT_EQ(audited(a, "auth.password_reset"), 0u);
}

TEST_F(AccountFlows, ForgotIsRateLimitedPerAddressWhetherOrNotItHasAnAccount) {
  for (std::string email : {testkit::sign_up(*server_, "Forgot Limit").email,
                            "nobody-" + core::random_hex(4) + "@example.com"}) {
    SCOPED_TRACE(email);
    std::string body = boost::json::serialize(object{{"email", email}});
    for (int i = 0; i < 5; ++i) EXPECT_EQ(post("/api/auth/password/forgot", body).status, 202);
    auto refused = post("/api/auth/password/forgot", body);
    expect_problem(refused, 429, "rate_limited");
  }
}

TEST_F(AccountFlows, AUserOfSeveralTenantsGetsAPlatformResetMailNoTenantSees) {
  Account a = testkit::sign_up(*server_, "Platform A");
  Account b = testkit::sign_up(*server_, "Platform B");
  testkit::add_member(*db_, b.tenant_id, a.user_id, "member");
  ASSERT_EQ(
      post("/api/auth/password/forgot", boost::json::serialize(object{{"email", a.email}})).status,
      202);
  object m = mail(a.email, "Reset your");
  EXPECT_EQ(str(m, "from"), "\"Acme Cloud\" <hello@mail.hsea.test>") << "the platform's brand";
  EXPECT_EQ(str(m, "html").find(a.tenant_name), std::string::npos);
  auto rows = testkit::stored_mail_to(*db_, a.email, "password_reset");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].tenant_id, "") << "a platform message";
  EXPECT_EQ(rows[0].user_id, a.user_id) << "sealed under its recipient's key";
  // The sink has the message before the sender records it as sent.
  EXPECT_TRUE(testkit::eventually([&] {
    return testkit::stored_mail_to(*db_, a.email, "password_reset")[0].status == "sent";
  }));
  // Row-level security: no scope of the application role sees a platform message.
  for (const std::string& setting :
       {std::string(), "SELECT set_config('app.tenant_id', '" + a.tenant_id + "', false); "}) {
    EXPECT_EQ(sql(db_->app_url(), setting + "SELECT count(*) FROM mail_messages "
                                            "WHERE template = 'password_reset'")[0][0],
              "0");
  }
  // Both tenants of the user audit the request; B's own owner is untouched.
  EXPECT_EQ(audited(a, "auth.password_reset_requested"), 1u);
  EXPECT_EQ(audited(b, "auth.password_reset_requested"), 1u);
  EXPECT_EQ(sink_->accepted_for(b.email, "Reset your").size(), 0u);
}

TEST(AccountReset, ForgotAnswersAlikeForUnknownAddressesAndMailsNoOne) {
  testkit::TestDatabase db;
  SmtpSink sink;
  auto env = env_for(sink);
  env["HSEA_ACCOUNT_MAILS_PER_HOUR"] = "0";
  testkit::TestServer server(db, env);
  Account a = testkit::sign_up(server, "Timing Co");
  auto forgot = [&](const std::string& email) {
    auto start = std::chrono::steady_clock::now();
    HttpResponse r =
        http("POST", server.url("/api/auth/password/forgot"),
             boost::json::serialize(object{{"email", email}}), {"Content-Type: application/json"});
    double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(r.status, 202) << r.body;
    return std::pair{r.body, ms};
  };
  std::vector<double> known, unknown;
  std::vector<std::string> strangers;
  std::string known_body, unknown_body;
  for (int i = 0; i < 21; ++i) {  // interleaved, so load affects both alike
    auto [kb, kms] = forgot(a.email);
    strangers.push_back("nobody-" + core::random_hex(5) + "@example.com");
    auto [ub, ums] = forgot(strangers.back());
    known.push_back(kms);
    unknown.push_back(ums);
    known_body = kb;
    unknown_body = ub;
  }
  EXPECT_EQ(known_body, unknown_body);
  auto median = [](std::vector<double> v) {
    std::ranges::sort(v);
    return v[v.size() / 2];
  };
  double mk = median(known), mu = median(unknown);
  // Generous: the same work either way, so only noise separates them.
  EXPECT_LT(std::abs(mk - mu), std::max(5.0, 0.5 * std::max(mk, mu)))
      << "known " << mk << " ms, unknown " << mu << " ms";
  // Every request became a job; the known address got its 21 mails, the others none.
  auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline &&
         sink.accepted_for(a.email, "Reset your").size() < 21) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(sink.accepted_for(a.email, "Reset your").size(), 21u);
  deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline &&
         sql(db.admin_url(),
             "SELECT count(*) FROM jobs WHERE kind = 'identity.password_reset' "
             "AND status <> 'succeeded'")[0][0] != "0") {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(sql(db.admin_url(),
                "SELECT count(*) FROM jobs WHERE kind = 'identity.password_reset' "
                "AND status = 'succeeded'")[0][0],
            "42");
  for (const auto& line : sink.lines()) {
    for (const auto& rcpt : line.at("rcpt_to").as_array()) {
      EXPECT_EQ(rcpt.as_string(), a.email) << "a mail to an address without an account";
    }
  }
  for (const auto& m : testkit::stored_mail(db)) EXPECT_EQ(m.to_address, a.email) << m.id;
}

// ------------------------------------------------------------------------ signed-in changes

TEST_F(AccountFlows, ChangingThePasswordEndsEveryOtherSessionButThisOne) {
  Account a = testkit::sign_up(*server_, "Change Co");
  auto other = login(a.email, a.password);
  ASSERT_EQ(other.status, 200);
  std::string other_access = str(json_of(other), "access_token");
  std::string other_refresh = str(json_of(other), "refresh_token");
  auto wrong = post("/api/me/password",
                    boost::json::serialize(object{{"current_password", "not my password at all"},
                                                  {"new_password", kNewPassword}}),
                    a.access_token);
  EXPECT_EQ(wrong.status, 422) << wrong.body;
  auto weak = post("/api/me/password",
                   boost::json::serialize(
                       object{{"current_password", a.password}, {"new_password", "password1"}}),
                   a.access_token);
  EXPECT_EQ(weak.status, 422) << weak.body;
  EXPECT_EQ(get("/api/me", other_access).status, 200) << "nothing changed yet";
  auto ok = post("/api/me/password",
                 boost::json::serialize(
                     object{{"current_password", a.password}, {"new_password", kNewPassword}}),
                 a.access_token);
  ASSERT_EQ(ok.status, 204) << ok.body;
  EXPECT_EQ(get("/api/me", a.access_token).status, 200) << "this session stays";
  auto mine =
      post("/api/auth/refresh", boost::json::serialize(object{{"refresh_token", a.refresh_token}}));
  EXPECT_EQ(mine.status, 200) << mine.body;
  EXPECT_EQ(get("/api/me", other_access).status, 401) << "the other session ended";
  EXPECT_EQ(
      post("/api/auth/refresh", boost::json::serialize(object{{"refresh_token", other_refresh}}))
          .status,
      401);
  EXPECT_EQ(login(a.email, a.password).status, 401);
  EXPECT_EQ(login(a.email, kNewPassword).status, 200);
  object notice = mail(a.email, "Your Acme Cloud password was changed");
  EXPECT_NE(str(notice, "text").find("from a signed-in session"), std::string::npos);
  EXPECT_EQ(audited(a, "user.password_changed"), 1u);
  EXPECT_EQ(post("/api/me/password", R"({"current_password":"x"})", a.access_token).status, 422);
}

TEST_F(AccountFlows, AnEmailChangeIsConfirmedFromTheNewAddressOnlyByItsAccount) {
  Account a = testkit::sign_up(*server_, "Move A");
  Account b = testkit::sign_up(*server_, "Move B");
  std::string target = "moved-" + core::random_hex(4) + "@example.com";
  auto body = [&](const std::string& email, const std::string& password) {
    return boost::json::serialize(object{{"email", email}, {"password", password}});
  };
  EXPECT_EQ(post("/api/me/email", body(target, "wrong password here"), a.access_token).status, 422);
  expect_problem(post("/api/me/email", body(b.email, a.password), a.access_token), 409, "conflict");
  EXPECT_EQ(post("/api/me/email", body("not an address", a.password), a.access_token).status, 422);
  EXPECT_EQ(post("/api/me/email", body(a.email, a.password), a.access_token).status, 422);
  auto asked = post("/api/me/email", body(target, a.password), a.access_token);
  ASSERT_EQ(asked.status, 202) << asked.body;
  object confirm = mail(target, "Confirm your new e-mail address");
  std::string token = token_in(confirm, "confirm-email");
  ASSERT_EQ(token.size(), 64u) << str(confirm, "text");
  object notice = mail(a.email, "Your Acme Cloud e-mail address is about to change");
  EXPECT_NE(str(notice, "text").find(target), std::string::npos);
  EXPECT_EQ(str(json_of(get("/api/me", a.access_token)), "email"), a.email) << "not yet";
  // Another tenant's user cannot use it, and trying spends nothing.
  expect_problem(post("/api/me/email/confirm", token_body(token), b.access_token), 400,
                 "token_invalid");
  EXPECT_EQ(str(json_of(get("/api/me", b.access_token)), "email"), b.email);
  // Nor is it a verification token.
  expect_problem(post("/api/auth/verify-email", token_body(token)), 400, "token_invalid");
  auto done = post("/api/me/email/confirm", token_body(token), a.access_token);
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(str(json_of(done), "email"), target);
  EXPECT_TRUE(json_of(done).at("email_verified").as_bool());
  EXPECT_EQ(login(target, a.password).status, 200);
  EXPECT_EQ(login(a.email, a.password).status, 401);
  EXPECT_EQ(audited(a, "user.email_changed"), 1u);
  EXPECT_EQ(audited(b, "user.email_changed"), 0u);
  expect_problem(post("/api/me/email/confirm", token_body(token), a.access_token), 400,
                 "token_invalid");
}

TEST_F(AccountFlows, AnAddressTakenMeanwhileIsA409AndChangesNothing) {
  Account a = testkit::sign_up(*server_, "Taken Co");
  std::string target = "taken-" + core::random_hex(4) + "@example.com";
  auto asked = post("/api/me/email",
                    boost::json::serialize(object{{"email", target}, {"password", a.password}}),
                    a.access_token);
  ASSERT_EQ(asked.status, 202) << asked.body;
  std::string token = token_in(mail(target, "Confirm your new e-mail address"), "confirm-email");
  ASSERT_FALSE(token.empty());
  auto other = post("/api/auth/signup",
                    boost::json::serialize(object{{"email", target},
                                                  {"password", "another long passphrase 7"},
                                                  {"name", "Quick"},
                                                  {"organization_name", "Quick Co"}}));
  ASSERT_EQ(other.status, 201) << other.body;
  expect_problem(post("/api/me/email/confirm", token_body(token), a.access_token), 409, "conflict");
  EXPECT_EQ(str(json_of(get("/api/me", a.access_token)), "email"), a.email);
}

}  // namespace
}  // namespace hsea
