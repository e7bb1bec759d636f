// Multi-factor sign-in (HSEA-018) from outside: enrolment with a QR code, the sign-in's second
// step with TOTP codes (computed here with liboath, as an authenticator app would) and recovery
// codes, replay and brute-force refusals, turning MFA off, and tenants that require it.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <liboath/oath.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <ctime>
#include <memory>
#include <string>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;
using testkit::TestDatabase;
using testkit::TestServer;

// The code an authenticator app shows for `base32_secret`, `offset_steps` 30-second steps away.
std::string totp(const std::string& base32_secret, int offset_steps = 0) {
  char* raw = nullptr;
  size_t len = 0;
  EXPECT_EQ(oath_base32_decode(base32_secret.c_str(), base32_secret.size(), &raw, &len), OATH_OK);
  std::unique_ptr<char, decltype(&free)> owned(raw, &free);
  char code[7] = {};
  EXPECT_EQ(oath_totp_generate(raw, len, std::time(nullptr) + offset_steps * 30, 30, 0, 6, code),
            OATH_OK);
  return code;
}

class Mfa : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    oath_init();
    db_ = new TestDatabase();
    server_ = new TestServer(*db_);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }

  HttpResponse post(const std::string& path, const object& body, const std::string& token) {
    std::vector<std::string> headers;
    if (!token.empty()) headers.push_back(bearer(token));
    return http("POST", server_->url(path), boost::json::serialize(body), headers);
  }

  // Enrols the account; returns {base32 secret, recovery codes}.
  std::pair<std::string, std::vector<std::string>> enrol(const Account& a) {
    HttpResponse start =
        http("POST", server_->url("/api/me/mfa/totp"), "", {bearer(a.access_token)});
    EXPECT_EQ(start.status, 200) << start.body;
    object s = json_of(start);
    std::string secret = str(s, "secret");
    HttpResponse confirm =
        post("/api/me/mfa/totp/confirm", {{"code", totp(secret)}}, a.access_token);
    EXPECT_EQ(confirm.status, 200) << confirm.body;
    std::vector<std::string> codes;
    object confirmed = json_of(confirm);
    for (const auto& c : confirmed.at("recovery_codes").as_array()) {
      codes.emplace_back(c.as_string());
    }
    return {secret, codes};
  }

  HttpResponse login(const Account& a) {
    return post("/api/auth/login", {{"email", a.email}, {"password", a.password}}, "");
  }

  static TestDatabase* db_;
  static TestServer* server_;
};
TestDatabase* Mfa::db_ = nullptr;
TestServer* Mfa::server_ = nullptr;

TEST_F(Mfa, EnrolmentGivesASecretUriAndQrCodeAndConfirmingTurnsItOn) {
  Account a = testkit::sign_up(*server_, "Enrol");
  HttpResponse start = http("POST", server_->url("/api/me/mfa/totp"), "", {bearer(a.access_token)});
  ASSERT_EQ(start.status, 200) << start.body;
  object s = json_of(start);
  std::string secret = str(s, "secret");
  EXPECT_EQ(secret.size(), 32u) << "160 bits in base32";
  EXPECT_EQ(str(s, "otpauth_uri").rfind("otpauth://totp/", 0), 0u) << str(s, "otpauth_uri");
  EXPECT_NE(str(s, "otpauth_uri").find("secret=" + secret), std::string::npos);
  EXPECT_EQ(str(s, "qr_svg").rfind("<svg", 0), 0u);
  EXPECT_NE(str(s, "qr_svg").find("<path"), std::string::npos);
  // Stored sealed: the secret is nowhere in the database in plain text.
  auto rows = testkit::sql(
      db_->admin_url(), "SELECT secret_sealed FROM user_totp WHERE user_id = '" + a.user_id + "'");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0][0].find(secret), std::string::npos);

  // Not on until a code confirms it; a wrong code changes nothing.
  EXPECT_FALSE(json_of(http("GET", server_->url("/api/me"), "", {bearer(a.access_token)}))
                   .at("mfa_enabled")
                   .as_bool());
  HttpResponse wrong = post("/api/me/mfa/totp/confirm", {{"code", "000000"}}, a.access_token);
  EXPECT_EQ(wrong.status, 401) << wrong.body;
  HttpResponse bad = post("/api/me/mfa/totp/confirm", {{"code", 123456}}, a.access_token);
  EXPECT_EQ(bad.status, 422) << bad.body;
  EXPECT_FALSE(json_of(http("GET", server_->url("/api/me"), "", {bearer(a.access_token)}))
                   .at("mfa_enabled")
                   .as_bool());

  HttpResponse ok = post("/api/me/mfa/totp/confirm", {{"code", totp(secret)}}, a.access_token);
  ASSERT_EQ(ok.status, 200) << ok.body;
  object confirmed = json_of(ok);
  const auto& codes = confirmed.at("recovery_codes").as_array();
  EXPECT_EQ(codes.size(), 10u);
  EXPECT_TRUE(json_of(http("GET", server_->url("/api/me"), "", {bearer(a.access_token)}))
                  .at("mfa_enabled")
                  .as_bool());
  // Only hashes are kept.
  auto stored = testkit::sql(db_->admin_url(),
                             "SELECT string_agg(code_hash, ',') FROM mfa_recovery_codes WHERE "
                             "user_id = '" +
                                 a.user_id + "'");
  EXPECT_EQ(stored[0][0].find(std::string(codes[0].as_string()).substr(0, 5)), std::string::npos);
  // Enrolling again while on is refused.
  EXPECT_EQ(http("POST", server_->url("/api/me/mfa/totp"), "", {bearer(a.access_token)}).status,
            409);
}

TEST_F(Mfa, SignInNeedsTheSecondStepAndACodeWorksOnce) {
  Account a = testkit::sign_up(*server_, "Second step");
  auto [secret, codes] = enrol(a);
  HttpResponse first = login(a);
  ASSERT_EQ(first.status, 200) << first.body;
  object challenge = json_of(first);
  EXPECT_TRUE(challenge.at("mfa_required").as_bool());
  EXPECT_FALSE(challenge.contains("access_token")) << "no session before the second factor";
  std::string token = str(challenge, "mfa_token");

  // The enrolment used this step's code; the next step's is within the server's window (one
  // step either way) and later, so it is accepted, once.
  std::string code = totp(secret, 1);
  HttpResponse done = post("/api/auth/mfa/verify", {{"mfa_token", token}, {"code", code}}, "");
  ASSERT_EQ(done.status, 200) << done.body;
  object session = json_of(done);
  EXPECT_FALSE(str(session, "access_token").empty());
  EXPECT_EQ(str(session.at("tenant").as_object(), "id"), a.tenant_id);
  EXPECT_EQ(
      http("GET", server_->url("/api/tenant"), "", {bearer(str(session, "access_token"))}).status,
      200);

  // Replays: the same challenge, and the same code in a new challenge.
  EXPECT_EQ(post("/api/auth/mfa/verify", {{"mfa_token", token}, {"code", code}}, "").status, 401);
  std::string second = str(json_of(login(a)), "mfa_token");
  HttpResponse replay = post("/api/auth/mfa/verify", {{"mfa_token", second}, {"code", code}}, "");
  EXPECT_EQ(replay.status, 401) << "a TOTP code is accepted once";
  // A forged challenge token.
  EXPECT_EQ(post("/api/auth/mfa/verify",
                 {{"mfa_token", std::string(64, 'a')}, {"code", totp(secret)}}, "")
                .status,
            401);
  // Both a code and a recovery code, or neither: 422.
  EXPECT_EQ(post("/api/auth/mfa/verify", {{"mfa_token", second}}, "").status, 422);
  EXPECT_EQ(post("/api/auth/mfa/verify",
                 {{"mfa_token", second}, {"code", "1"}, {"recovery_code", "2"}}, "")
                .status,
            422);
}

TEST_F(Mfa, RecoveryCodesAreSingleUseAndWrongCodesEndTheChallenge) {
  Account a = testkit::sign_up(*server_, "Recovery");
  auto [secret, codes] = enrol(a);
  std::string token = str(json_of(login(a)), "mfa_token");
  HttpResponse used =
      post("/api/auth/mfa/verify", {{"mfa_token", token}, {"recovery_code", codes[0]}}, "");
  ASSERT_EQ(used.status, 200) << used.body;
  std::string again = str(json_of(login(a)), "mfa_token");
  EXPECT_EQ(
      post("/api/auth/mfa/verify", {{"mfa_token", again}, {"recovery_code", codes[0]}}, "").status,
      401)
      << "a recovery code is single-use";

  // Five wrong codes end the challenge: even a right code is refused after them.
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(post("/api/auth/mfa/verify", {{"mfa_token", again}, {"code", "000000"}}, "").status,
              401);
  }
  EXPECT_EQ(
      post("/api/auth/mfa/verify", {{"mfa_token", again}, {"recovery_code", codes[1]}}, "").status,
      401);
  // The recovery code it did not spend still works in a new challenge.
  std::string fresh = str(json_of(login(a)), "mfa_token");
  EXPECT_EQ(
      post("/api/auth/mfa/verify", {{"mfa_token", fresh}, {"recovery_code", codes[1]}}, "").status,
      200);
}

TEST_F(Mfa, ChallengesAndCodesOfOneUserDoNothingForAnother) {
  Account a = testkit::sign_up(*server_, "Alice MFA");
  Account b = testkit::sign_up(*server_, "Bob MFA");
  auto [secret_a, codes_a] = enrol(a);
  auto [secret_b, codes_b] = enrol(b);
  std::string token_b = str(json_of(login(b)), "mfa_token");
  // A's recovery code and A's TOTP code against B's challenge.
  EXPECT_EQ(
      post("/api/auth/mfa/verify", {{"mfa_token", token_b}, {"recovery_code", codes_a[2]}}, "")
          .status,
      401);
  EXPECT_EQ(post("/api/auth/mfa/verify", {{"mfa_token", token_b}, {"code", totp(secret_a, 1)}}, "")
                .status,
            401);
  // A's code is still A's to use (nothing of A's was spent).
  std::string token_a = str(json_of(login(a)), "mfa_token");
  EXPECT_EQ(post("/api/auth/mfa/verify", {{"mfa_token", token_a}, {"code", totp(secret_a, 1)}}, "")
                .status,
            200);
  EXPECT_EQ(
      post("/api/auth/mfa/verify", {{"mfa_token", token_a}, {"recovery_code", codes_a[2]}}, "")
          .status,
      401)
      << "the challenge was used";
}

TEST_F(Mfa, TurningItOffNeedsACodeOrThePassword) {
  Account a = testkit::sign_up(*server_, "Off");
  auto [secret, codes] = enrol(a);
  auto del = [&](const object& body) {
    return http("DELETE", server_->url("/api/me/mfa"), boost::json::serialize(body),
                {bearer(a.access_token)});
  };
  EXPECT_EQ(del(object{}).status, 422);
  EXPECT_EQ(del({{"password", "not-the-password"}}).status, 401);
  EXPECT_EQ(del({{"code", "000000"}}).status, 401);
  EXPECT_TRUE(json_of(http("GET", server_->url("/api/me"), "", {bearer(a.access_token)}))
                  .at("mfa_enabled")
                  .as_bool());
  EXPECT_EQ(del({{"password", a.password}}).status, 204);
  EXPECT_FALSE(json_of(http("GET", server_->url("/api/me"), "", {bearer(a.access_token)}))
                   .at("mfa_enabled")
                   .as_bool());
  // Sign-in is one step again, and the old recovery codes are gone.
  HttpResponse plain = login(a);
  EXPECT_FALSE(str(json_of(plain), "access_token").empty()) << plain.body;
  EXPECT_EQ(testkit::sql(db_->admin_url(),
                         "SELECT count(*) FROM mfa_recovery_codes WHERE "
                         "user_id = '" +
                             a.user_id + "'")[0][0],
            "0");
  // API keys cannot manage a user's MFA.
  HttpResponse key = post("/api/api-keys", {{"name", "k"}, {"scopes", boost::json::array{"read"}}},
                          a.access_token);
  ASSERT_EQ(key.status, 201) << key.body;
  EXPECT_EQ(
      http("POST", server_->url("/api/me/mfa/totp"), "", {bearer(str(json_of(key), "key"))}).status,
      403);
}

TEST_F(Mfa, ATenantThatRequiresMfaAdmitsOnlySessionsThatPassedOne) {
  Account owner = testkit::sign_up(*server_, "Strict");
  Account other = testkit::sign_up(*server_, "Lax");
  // Members cannot change it; the owner can.
  HttpResponse on = http("PATCH", server_->url("/api/tenant"), R"({"require_mfa": true})",
                         {bearer(owner.access_token)});
  ASSERT_EQ(on.status, 200) << on.body;
  EXPECT_TRUE(json_of(on).at("require_mfa").as_bool());
  // The owner's own password-only session is refused at once, with a clear code...
  HttpResponse refused = http("GET", server_->url("/api/tenant"), "", {bearer(owner.access_token)});
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(str(json_of(refused), "code"), "mfa_required");
  // ...but can still enrol; confirming admits the current session.
  HttpResponse fresh = login(owner);
  EXPECT_TRUE(json_of(fresh).at("mfa_enrollment_required").as_bool()) << fresh.body;
  auto [secret, codes] = enrol(owner);
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(owner.access_token)}).status, 200);
  // Another tenant is not affected.
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(other.access_token)}).status, 200);
  // Bad input changes nothing.
  EXPECT_EQ(http("PATCH", server_->url("/api/tenant"), R"({"require_mfa": "yes"})",
                 {bearer(other.access_token)})
                .status,
            422);
  EXPECT_FALSE(json_of(http("GET", server_->url("/api/tenant"), "", {bearer(other.access_token)}))
                   .at("require_mfa")
                   .as_bool());
}

}  // namespace
}  // namespace hsea
