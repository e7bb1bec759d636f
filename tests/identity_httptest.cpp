// Black-box tests of sign-up, sign-in, tokens, sessions, the caller's profile and API keys: the
// real `hsea` binary against a real PostgreSQL, seen only through HTTP (and, for checks of what
// was stored or removed, the database's owner role).
#include <curl/curl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sodium.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <set>
#include <thread>

#include "core/ids.hpp"
#include "identity/tokens.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::bearer;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;
using testkit::TestDatabase;
using testkit::TestServer;

// ------------------------------------------------------------------------------ helpers

constexpr const char* kGoodPassword = "violet-Staple-97-horizon";
constexpr const char* kFirefoxAgent =
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

std::string unique_email(std::string_view who) {
  static std::atomic<int> counter{0};
  return fmt::format("{}-{}-{}@example.test", who, ++counter, core::random_hex(4));
}

std::string b64url(std::string_view bytes) { return identity::base64url_encode(bytes); }

std::string unb64url(std::string_view text) {
  auto out = identity::base64url_decode(text);
  if (!out) ADD_FAILURE() << "not base64url: " << text;
  return out.value_or("");
}

std::vector<std::string> split_jwt(const std::string& token) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (true) {
    auto dot = token.find('.', start);
    parts.push_back(token.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

object jwt_part(const std::string& token, int index) {
  auto parts = split_jwt(token);
  if (parts.size() != 3) {
    ADD_FAILURE() << "not a JWT: " << token;
    return {};
  }
  return boost::json::parse(unb64url(parts[index])).as_object();
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[32];
  unsigned int len = sizeof out;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

struct EcKey {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ~EcKey() { EVP_PKEY_free(pkey); }
  std::string public_pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return out;
  }
};

std::string jwt(const object& header, const object& payload) {
  return b64url(boost::json::serialize(header)) + "." + b64url(boost::json::serialize(payload));
}

// "hsea_session=abc; Path=/; HttpOnly" -> "hsea_session=abc"
std::string cookie_pair(const std::string& set_cookie) {
  return set_cookie.substr(0, set_cookie.find(';'));
}

struct Account {
  std::string email;
  std::string password;
  std::string user_id;
  std::string tenant_id;
  std::string access_token;
  std::string refresh_token;
};

HttpResponse signup_request(const TestServer& s, const std::string& email,
                            const std::string& password, const std::string& org = "Acme Inc") {
  object body{{"email", email},
              {"password", password},
              {"name", "Test Person"},
              {"organization_name", org}};
  return http("POST", s.url("/api/auth/signup"), boost::json::serialize(body));
}

// Signs up a new user (owner of a new tenant); fails the test when that does not work.
Account signup(const TestServer& s, std::string_view who = "user") {
  Account a{unique_email(who), kGoodPassword, {}, {}, {}, {}};
  HttpResponse r = signup_request(s, a.email, a.password);
  EXPECT_EQ(r.status, 201) << r.body;
  object body = json_of(r);
  if (r.status != 201) return a;
  a.user_id = str(body.at("user").as_object(), "id");
  a.tenant_id = str(body.at("tenant").as_object(), "id");
  a.access_token = str(body, "access_token");
  a.refresh_token = str(body, "refresh_token");
  return a;
}

HttpResponse login_request(const TestServer& s, const std::string& email,
                           const std::string& password,
                           const std::vector<std::string>& headers = {}) {
  object body{{"email", email}, {"password", password}};
  return http("POST", s.url("/api/auth/login"), boost::json::serialize(body), headers);
}

// Signs in again (a new session); returns {access_token, refresh_token}.
std::pair<std::string, std::string> login(const TestServer& s, const Account& a,
                                          const std::vector<std::string>& headers = {}) {
  HttpResponse r = login_request(s, a.email, a.password, headers);
  EXPECT_EQ(r.status, 200) << r.body;
  object body = json_of(r);
  return {str(body, "access_token"), str(body, "refresh_token")};
}

int me_status(const TestServer& s, const std::string& access_token) {
  return http("GET", s.url("/api/me"), "", {bearer(access_token)}).status;
}

// Waits until the server has loaded its signing keys (it may listen a moment before).
void wait_for_keys(const TestServer& s) {
  for (int i = 0; i < 200; ++i) {
    if (http("GET", s.url("/.well-known/jwks.json")).status == 200) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  FAIL() << "signing keys never loaded";
}

struct ApiKey {
  std::string id;
  std::string key;
};

ApiKey create_api_key(const TestServer& s, const Account& owner,
                      const std::string& scopes_json = R"(["read"])") {
  HttpResponse r =
      http("POST", s.url("/api/api-keys"), R"({"name":"ci","scopes":)" + scopes_json + "}",
           {bearer(owner.access_token)});
  EXPECT_EQ(r.status, 201) << r.body;
  object body = json_of(r);
  return {str(body, "id"), str(body, "key")};
}

// A JWT signing key the test holds: inserted as a key retired a minute ago, which the server
// still accepts for verification (keys keep verifying for an hour after rotation). It lets the
// test sign tokens with a valid signature and chosen claims (e.g. already expired).
constexpr const char* kRetiredKid = "test-retired-key";

// ------------------------------------------------------------------------------ fixture

class Identity : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    retired_key_ = new EcKey();
    testkit::sql(db_->admin_url(),
                 "INSERT INTO signing_keys (kid, algorithm, public_pem, sealed_private, "
                 "created_at, retired_at) VALUES ($1, 'ES256', $2, 'not-used', "
                 "now() - interval '30 minutes', now() - interval '1 minute')",
                 {kRetiredKid, retired_key_->public_pem()});
    server_ = new TestServer(*db_, {{"HSEA_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"}});
    wait_for_keys(*server_);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete retired_key_;
    delete db_;
  }
  static TestDatabase* db_;
  static TestServer* server_;
  static EcKey* retired_key_;
};
TestDatabase* Identity::db_ = nullptr;
TestServer* Identity::server_ = nullptr;
EcKey* Identity::retired_key_ = nullptr;

// ------------------------------------------------------------------------------ sign-up

TEST_F(Identity, SignupReturnsUserTenantAndTokens) {
  std::string email = unique_email("signup");
  HttpResponse r = signup_request(*server_, email, kGoodPassword, "Globex Corporation");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  object body = json_of(r);
  const object& user = body.at("user").as_object();
  EXPECT_TRUE(core::is_uuid(str(user, "id")));
  EXPECT_EQ(str(user, "email"), email);
  EXPECT_EQ(str(user, "name"), "Test Person");
  EXPECT_FALSE(user.contains("password_hash"));
  EXPECT_EQ(r.body.find(kGoodPassword), std::string::npos);
  const object& tenant = body.at("tenant").as_object();
  EXPECT_TRUE(core::is_uuid(str(tenant, "id")));
  EXPECT_EQ(str(tenant, "name"), "Globex Corporation");
  EXPECT_EQ(str(tenant, "slug").rfind("globex-corporation", 0), 0u) << str(tenant, "slug");
  EXPECT_EQ(split_jwt(str(body, "access_token")).size(), 3u);
  EXPECT_GE(str(body, "refresh_token").size(), 32u);
  ASSERT_TRUE(body.contains("expires_in"));
  EXPECT_EQ(body.at("expires_in").as_int64(), 900);

  // The token works, and the new user owns the new tenant.
  HttpResponse me = http("GET", server_->url("/api/me"), "", {bearer(str(body, "access_token"))});
  ASSERT_EQ(me.status, 200) << me.body;
  object me_body = json_of(me);
  EXPECT_EQ(str(me_body, "email"), email);
  ASSERT_EQ(me_body.at("tenants").as_array().size(), 1u);
  const object& membership = me_body.at("tenants").as_array()[0].as_object();
  EXPECT_EQ(str(membership, "id"), str(tenant, "id"));
  EXPECT_EQ(str(membership, "role"), "owner");

  // Also served under /api/v1.
  HttpResponse v1 = signup_request(*server_, unique_email("v1"), kGoodPassword);
  HttpResponse v1r = http("POST", server_->url("/api/v1/auth/login"),
                          R"({"email":"nobody@example.test","password":"whatever-long-1"})");
  EXPECT_EQ(v1.status, 201);
  EXPECT_EQ(v1r.status, 401) << v1r.body;
}

TEST_F(Identity, WeakPasswordsAre422AndCreateNothing) {
  std::string email = unique_email("weak");
  for (std::string weak : {"short1!", "password1234", "PassWord1234", "qwerty123456",
                           "correcthorsebatterystaple", "aaaaaaaaaaaaaaaa"}) {
    HttpResponse r = signup_request(*server_, email, weak);
    EXPECT_EQ(r.status, 422) << weak << ": " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    object body = json_of(r);
    EXPECT_EQ(str(body, "code"), "validation_failed");
    bool names_password = false;
    if (body.contains("errors")) {
      for (const auto& e : body.at("errors").as_array()) {
        names_password |= str(e.as_object(), "field") == "/password";
      }
    }
    EXPECT_TRUE(names_password) << weak << ": " << r.body;
  }
  auto rows = testkit::sql(db_->admin_url(), "SELECT count(*) FROM users WHERE email_index = $1",
                           {testkit::email_index(email)});
  EXPECT_EQ(rows[0][0], "0");
  // Nothing was reserved: the same e-mail signs up with a good password.
  HttpResponse ok = signup_request(*server_, email, kGoodPassword);
  EXPECT_EQ(ok.status, 201) << ok.body;
}

TEST_F(Identity, DuplicateEmailIs409AndLeavesNoTenantBehind) {
  Account a = signup(*server_, "dup");
  auto tenants_before = testkit::sql(db_->admin_url(), "SELECT count(*) FROM tenants")[0][0];
  std::string upper = a.email;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (const std::string& email : {a.email, upper}) {
    HttpResponse r = signup_request(*server_, email, "another-Good-passphrase-5");
    EXPECT_EQ(r.status, 409) << r.body;
    EXPECT_EQ(str(json_of(r), "code"), "conflict");
  }
  EXPECT_EQ(testkit::sql(db_->admin_url(), "SELECT count(*) FROM tenants")[0][0], tenants_before);
  // The first account is untouched.
  EXPECT_EQ(login_request(*server_, a.email, a.password).status, 200);
}

TEST_F(Identity, MalformedJsonIs400AndWrongContentTypeIs415) {
  HttpResponse bad = http("POST", server_->url("/api/auth/signup"), R"({"email": "x@y.z",)");
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_EQ(bad.header("content-type"), "application/problem+json");
  HttpResponse form = http("POST", server_->url("/api/auth/login"), "email=a%40b.c&password=x",
                           {"Content-Type: text/plain"});
  EXPECT_EQ(form.status, 415) << form.body;
  HttpResponse missing =
      http("POST", server_->url("/api/auth/signup"), R"({"email":"a@example.test"})");
  EXPECT_EQ(missing.status, 422) << missing.body;
}

// ------------------------------------------------------------------------------ sign-in

TEST_F(Identity, LoginReturnsTheSameTokenShape) {
  Account a = signup(*server_, "login");
  HttpResponse r = login_request(*server_, a.email, a.password);
  ASSERT_EQ(r.status, 200) << r.body;
  object body = json_of(r);
  EXPECT_EQ(str(body.at("user").as_object(), "id"), a.user_id);
  ASSERT_TRUE(body.at("tenant").is_object()) << r.body;
  EXPECT_EQ(str(body.at("tenant").as_object(), "id"), a.tenant_id);
  EXPECT_FALSE(str(body.at("tenant").as_object(), "slug").empty());
  EXPECT_EQ(split_jwt(str(body, "access_token")).size(), 3u);
  EXPECT_FALSE(str(body, "refresh_token").empty());
  EXPECT_NE(str(body, "refresh_token"), a.refresh_token);
  EXPECT_EQ(body.at("expires_in").as_int64(), 900);
  EXPECT_EQ(me_status(*server_, str(body, "access_token")), 200);
  // E-mail addresses are not case-sensitive.
  std::string upper = a.email;
  upper[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(upper[0])));
  EXPECT_EQ(login_request(*server_, upper, a.password).status, 200);
}

TEST_F(Identity, WrongPasswordAndUnknownEmailGetTheSame401) {
  Account a = signup(*server_, "wrongpw");
  HttpResponse wrong = login_request(*server_, a.email, "not-the-right-password-1");
  HttpResponse unknown = login_request(*server_, unique_email("ghost"), "not-the-right-password-1");
  ASSERT_EQ(wrong.status, 401) << wrong.body;
  ASSERT_EQ(unknown.status, 401) << unknown.body;
  object w = json_of(wrong), u = json_of(unknown);
  EXPECT_NE(str(w, "request_id"), str(u, "request_id"));
  w.erase("request_id");
  u.erase("request_id");
  EXPECT_EQ(boost::json::serialize(w), boost::json::serialize(u));
  EXPECT_EQ(wrong.header("www-authenticate"), unknown.header("www-authenticate"));
}

TEST_F(Identity, FailedLoginsAreThrottledPerAccount) {
  // The suite's server allows 3 failures per account (HSEA_LOGIN_MAX_FAILURES_PER_ACCOUNT).
  Account a = signup(*server_, "throttle");
  Account other = signup(*server_, "bystander");
  std::string upper = a.email;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (int i = 0; i < 3; ++i) {
    // The spelling of the address does not matter: it is one account.
    EXPECT_EQ(login_request(*server_, i == 1 ? upper : a.email, "wrong-password-attempt").status,
              401)
        << i;
  }
  HttpResponse fourth = login_request(*server_, a.email, "wrong-password-attempt");
  EXPECT_EQ(fourth.status, 429) << fourth.body;
  std::string retry = fourth.header("retry-after");
  ASSERT_FALSE(retry.empty());
  EXPECT_GT(std::stoi(retry), 0);
  EXPECT_LE(std::stoi(retry), 3600);
  EXPECT_EQ(str(json_of(fourth), "code"), "rate_limited");
  // Even the right password is refused while throttled.
  HttpResponse right = login_request(*server_, a.email, a.password);
  EXPECT_EQ(right.status, 429) << right.body;
  EXPECT_TRUE(str(json_of(right), "access_token").empty());
  // Other accounts are not affected.
  EXPECT_EQ(login_request(*server_, other.email, other.password).status, 200);
  // An address without an account is throttled the same way (no way to tell them apart).
  std::string ghost = unique_email("ghost");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(login_request(*server_, ghost, "wrong-pw-123").status, 401);
  HttpResponse ghost_fourth = login_request(*server_, ghost, "wrong-pw-123");
  EXPECT_EQ(ghost_fourth.status, 429) << ghost_fourth.body;
  EXPECT_FALSE(ghost_fourth.header("retry-after").empty());
}

TEST_F(Identity, UnknownEmailCostsAboutAsMuchAsAWrongPassword) {
  login_request(*server_, unique_email("warmup"), "warm-up-password-1");
  auto median_ms = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::vector<double> known, unknown;
  for (int i = 0; i < 3; ++i) {
    Account a = signup(*server_, "timing");  // one failure each: no throttling
    auto start = std::chrono::steady_clock::now();
    EXPECT_EQ(login_request(*server_, a.email, "not-the-password-12").status, 401);
    known.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
    start = std::chrono::steady_clock::now();
    EXPECT_EQ(login_request(*server_, unique_email("nobody"), "not-the-password-12").status, 401);
    unknown.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  // Without the password hash work an unknown address would answer many times faster.
  EXPECT_GT(median_ms(unknown), 0.4 * median_ms(known))
      << "unknown " << median_ms(unknown) << " ms, known " << median_ms(known) << " ms";
}

TEST_F(Identity, AccountWithoutPasswordCannotSignInWithPassword) {
  // Accounts may have no password (invited, SSO-only): no password at all must sign them in.
  Account a = signup(*server_, "nopassword");
  testkit::sql(db_->admin_url(), "UPDATE users SET password_hash = NULL WHERE id = $1::uuid",
               {a.user_id});
  for (std::string pw : {a.password, std::string("hsea-dummy-password-for-timing"),
                         std::string("some-other-password-1")}) {
    HttpResponse r = login_request(*server_, a.email, pw);
    EXPECT_EQ(r.status, 401) << pw << ": " << r.body;
  }
}

TEST_F(Identity, PasswordsAreStoredWithArgon2idAndUpgradedOnLogin) {
  Account a = signup(*server_, "rehash");
  auto stored = [&] {
    return testkit::sql(db_->admin_url(), "SELECT password_hash FROM users WHERE id = $1::uuid",
                        {a.user_id})[0][0];
  };
  std::string hash = stored();
  EXPECT_EQ(hash.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << hash;
  EXPECT_EQ(hash.find(a.password), std::string::npos);
  // A hash made with weaker parameters (as an older release might have) is upgraded at the
  // next successful sign-in.
  ASSERT_GE(sodium_init(), 0);
  char weak[crypto_pwhash_STRBYTES];
  ASSERT_EQ(crypto_pwhash_str_alg(
                weak, a.password.data(), a.password.size(), crypto_pwhash_argon2id_OPSLIMIT_MIN,
                crypto_pwhash_argon2id_MEMLIMIT_MIN, crypto_pwhash_ALG_ARGON2ID13),
            0);
  testkit::sql(db_->admin_url(), "UPDATE users SET password_hash = $1 WHERE id = $2::uuid",
               {weak, a.user_id});
  EXPECT_EQ(login_request(*server_, a.email, a.password).status, 200);
  std::string upgraded = stored();
  EXPECT_NE(upgraded, weak);
  EXPECT_EQ(upgraded.rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << upgraded;
  EXPECT_EQ(login_request(*server_, a.email, a.password).status, 200);
}

TEST_F(Identity, ConcurrentSignupsWithOneOrganizationNameAllSucceed) {
  std::string org = "Race Corp " + core::random_hex(3);
  std::vector<std::future<HttpResponse>> replies;
  for (int i = 0; i < 6; ++i) {
    replies.push_back(std::async(std::launch::async, [org] {
      return signup_request(*server_, unique_email("race"), kGoodPassword, org);
    }));
  }
  std::set<std::string> slugs;
  for (auto& f : replies) {
    HttpResponse r = f.get();
    EXPECT_EQ(r.status, 201) << r.body;
    if (r.status == 201) slugs.insert(str(json_of(r).at("tenant").as_object(), "slug"));
  }
  EXPECT_EQ(slugs.size(), 6u);
}

TEST_F(Identity, TokensSelectOnlyTheCallersTenants) {
  Account a = signup(*server_, "tenants-a");
  Account b = signup(*server_, "tenants-b");
  HttpResponse other = http("GET", server_->url("/api/tenant"), "",
                            {bearer(a.access_token), "X-Tenant-Id: " + b.tenant_id});
  EXPECT_TRUE(other.status == 403 || other.status == 404) << other.body;
  EXPECT_EQ(other.body.find(b.tenant_id), std::string::npos);
  HttpResponse login_other =
      http("POST", server_->url("/api/auth/login"),
           boost::json::serialize(
               object{{"email", a.email}, {"password", a.password}, {"tenant_id", b.tenant_id}}));
  EXPECT_EQ(login_other.status, 403) << login_other.body;
  EXPECT_TRUE(str(json_of(login_other), "access_token").empty());

  // Once a member of both, the header picks the tenant, and sign-in may name it.
  testkit::sql(db_->admin_url(),
               "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'member')",
               {b.tenant_id, a.user_id});
  HttpResponse picked = http("GET", server_->url("/api/tenant"), "",
                             {bearer(a.access_token), "X-Tenant-Id: " + b.tenant_id});
  ASSERT_EQ(picked.status, 200) << picked.body;
  EXPECT_EQ(str(json_of(picked), "id"), b.tenant_id);
  HttpResponse own = http("GET", server_->url("/api/tenant"), "", {bearer(a.access_token)});
  EXPECT_EQ(str(json_of(own), "id"), a.tenant_id);
  HttpResponse login_b =
      http("POST", server_->url("/api/auth/login"),
           boost::json::serialize(
               object{{"email", a.email}, {"password", a.password}, {"tenant_id", b.tenant_id}}));
  ASSERT_EQ(login_b.status, 200) << login_b.body;
  object body = json_of(login_b);
  EXPECT_EQ(str(body.at("tenant").as_object(), "id"), b.tenant_id);
  HttpResponse via_token =
      http("GET", server_->url("/api/tenant"), "", {bearer(str(body, "access_token"))});
  EXPECT_EQ(str(json_of(via_token), "id"), b.tenant_id);
  HttpResponse me = http("GET", server_->url("/api/me"), "", {bearer(a.access_token)});
  EXPECT_EQ(json_of(me).at("tenants").as_array().size(), 2u) << me.body;
}

// ------------------------------------------------------------------------------ refresh, logout

TEST_F(Identity, RefreshRotatesAndReuseRevokesTheFamily) {
  Account a = signup(*server_, "refresh");
  HttpResponse first = http("POST", server_->url("/api/auth/refresh"),
                            boost::json::serialize(object{{"refresh_token", a.refresh_token}}));
  ASSERT_EQ(first.status, 200) << first.body;
  object pair = json_of(first);
  std::string access2 = str(pair, "access_token"), refresh2 = str(pair, "refresh_token");
  EXPECT_EQ(split_jwt(access2).size(), 3u);
  EXPECT_FALSE(refresh2.empty());
  EXPECT_NE(refresh2, a.refresh_token);
  EXPECT_EQ(pair.at("expires_in").as_int64(), 900);
  EXPECT_EQ(me_status(*server_, access2), 200);
  // The refreshed token still names the tenant chosen at sign-in.
  EXPECT_EQ(str(jwt_part(access2, 1), "tid"), a.tenant_id);
  HttpResponse tenant = http("GET", server_->url("/api/tenant"), "", {bearer(access2)});
  EXPECT_EQ(tenant.status, 200) << tenant.body;

  // Another session of the same user is a different family and must survive.
  auto [other_access, other_refresh] = login(*server_, a);

  // The spent token presented again: refused, and the whole family ends.
  HttpResponse reuse = http("POST", server_->url("/api/auth/refresh"),
                            boost::json::serialize(object{{"refresh_token", a.refresh_token}}));
  EXPECT_EQ(reuse.status, 401) << reuse.body;
  HttpResponse newer = http("POST", server_->url("/api/auth/refresh"),
                            boost::json::serialize(object{{"refresh_token", refresh2}}));
  EXPECT_EQ(newer.status, 401) << newer.body;
  EXPECT_EQ(me_status(*server_, access2), 401);
  EXPECT_EQ(me_status(*server_, a.access_token), 401);

  EXPECT_EQ(me_status(*server_, other_access), 200);
  HttpResponse other = http("POST", server_->url("/api/auth/refresh"),
                            boost::json::serialize(object{{"refresh_token", other_refresh}}));
  EXPECT_EQ(other.status, 200) << other.body;

  HttpResponse garbage =
      http("POST", server_->url("/api/auth/refresh"), R"({"refresh_token":"0123456789abcdef"})");
  EXPECT_EQ(garbage.status, 401) << garbage.body;
}

TEST_F(Identity, LogoutRevokesTheSession) {
  Account a = signup(*server_, "logout");
  auto [access2, refresh2] = login(*server_, a);
  HttpResponse out = http("POST", server_->url("/api/auth/logout"), "", {bearer(a.access_token)});
  EXPECT_EQ(out.status, 204) << out.body;
  EXPECT_EQ(me_status(*server_, a.access_token), 401);
  HttpResponse refresh = http("POST", server_->url("/api/auth/refresh"),
                              boost::json::serialize(object{{"refresh_token", a.refresh_token}}));
  EXPECT_EQ(refresh.status, 401) << refresh.body;
  // Only that session ended.
  EXPECT_EQ(me_status(*server_, access2), 200);
  EXPECT_EQ(http("POST", server_->url("/api/auth/logout")).status, 401);
}

// ------------------------------------------------------------------------------ JWT

TEST_F(Identity, JwksListsTheKeyThatSignsTokens) {
  Account a = signup(*server_, "jwks");
  HttpResponse r = http("GET", server_->url("/.well-known/jwks.json"));
  ASSERT_EQ(r.status, 200);
  object header = jwt_part(a.access_token, 0);
  EXPECT_EQ(str(header, "alg"), "ES256");
  std::string kid = str(header, "kid");
  ASSERT_FALSE(kid.empty());
  bool found = false;
  object jwks = json_of(r);
  for (const auto& k : jwks.at("keys").as_array()) {
    const object& key = k.as_object();
    EXPECT_FALSE(key.contains("d")) << "private key published";
    if (str(key, "kid") != kid) continue;
    found = true;
    EXPECT_EQ(str(key, "kty"), "EC");
    EXPECT_EQ(str(key, "crv"), "P-256");
    EXPECT_EQ(unb64url(str(key, "x")).size(), 32u);
    EXPECT_EQ(unb64url(str(key, "y")).size(), 32u);
  }
  EXPECT_TRUE(found) << r.body;
  object payload = jwt_part(a.access_token, 1);
  EXPECT_EQ(payload.at("exp").as_int64() - payload.at("iat").as_int64(), 900);
  EXPECT_EQ(str(payload, "sub"), a.user_id);
}

TEST_F(Identity, ForgedAndExpiredTokensAre401) {
  Account a = signup(*server_, "jwt");
  Account b = signup(*server_, "jwt-other");
  auto parts = split_jwt(a.access_token);
  object header = jwt_part(a.access_token, 0);
  object payload = jwt_part(a.access_token, 1);
  std::int64_t now = payload.at("iat").as_int64();

  // A control: a token the test signs with a key the server knows is accepted, so the refusals
  // below are about the attack, not the test's signing.
  object retired_header{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", kRetiredKid}};
  std::string input = jwt(retired_header, payload);
  std::string control = input + "." + b64url(identity::es256_sign(retired_key_->pkey, input));
  ASSERT_EQ(me_status(*server_, control), 200) << "the test's own signing is broken";

  std::vector<std::pair<std::string, std::string>> forged;
  for (std::string alg : {"none", "None", "NONE"}) {
    object h{{"alg", alg}, {"typ", "JWT"}};
    forged.push_back({"alg " + alg, jwt(h, payload) + "."});
    object hk = header;
    hk["alg"] = alg;
    forged.push_back({"alg " + alg + " with kid and signature", jwt(hk, payload) + "." + parts[2]});
  }
  // HS256 keyed with the public key material (the classic RS/ES -> HS confusion).
  HttpResponse jwks = http("GET", server_->url("/.well-known/jwks.json"));
  object jwk;
  object jwks_body = json_of(jwks);
  for (const auto& k : jwks_body.at("keys").as_array()) {
    if (str(k.as_object(), "kid") == str(header, "kid")) jwk = k.as_object();
  }
  ASSERT_FALSE(jwk.empty());
  std::string point = "\x04" + unb64url(str(jwk, "x")) + unb64url(str(jwk, "y"));
  std::string pem;
  {
    OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
    EVP_PKEY* pub = nullptr;
    EVP_PKEY_fromdata_init(ctx);
    EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params);
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pub);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    EVP_PKEY_free(pub);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
  }
  ASSERT_NE(pem.find("BEGIN PUBLIC KEY"), std::string::npos);
  for (const auto& [what, secret] :
       std::vector<std::pair<std::string, std::string>>{{"jwks document", jwks.body},
                                                        {"jwk", boost::json::serialize(jwk)},
                                                        {"pem", pem},
                                                        {"raw point", point},
                                                        {"x", str(jwk, "x")}}) {
    object h = header;
    h["alg"] = "HS256";
    std::string in = jwt(h, payload);
    forged.push_back({"HS256 keyed with " + what, in + "." + b64url(hmac_sha256(secret, in))});
  }
  // A key the server never issued, under an unknown kid and under the real kid.
  EcKey stranger;
  for (const std::string& kid : std::vector<std::string>{"unknown-kid", str(header, "kid"), ""}) {
    object h = header;
    h["kid"] = kid;
    std::string in = jwt(h, payload);
    forged.push_back({"foreign key, kid '" + kid + "'",
                      in + "." + b64url(identity::es256_sign(stranger.pkey, in))});
  }
  // The real signature over a changed payload (another user; a later expiry).
  {
    object p = payload;
    p["sub"] = b.user_id;
    p["tid"] = b.tenant_id;
    forged.push_back({"payload naming another user",
                      parts[0] + "." + b64url(boost::json::serialize(p)) + "." + parts[2]});
    object q = payload;
    q["exp"] = now + 86400 * 365;
    forged.push_back({"payload with a later expiry",
                      parts[0] + "." + b64url(boost::json::serialize(q)) + "." + parts[2]});
  }
  // Validly signed but expired, or not yet valid, or for another audience.
  {
    object p = payload;
    p["iat"] = now - 1000;
    p["exp"] = now - 100;
    std::string in = jwt(retired_header, p);
    forged.push_back({"expired", in + "." + b64url(identity::es256_sign(retired_key_->pkey, in))});
    object q = payload;
    q["aud"] = "someone-else";
    in = jwt(retired_header, q);
    forged.push_back(
        {"wrong audience", in + "." + b64url(identity::es256_sign(retired_key_->pkey, in))});
    object f = payload;
    f["iat"] = now + 3600;
    f["exp"] = now + 4500;
    in = jwt(retired_header, f);
    forged.push_back(
        {"issued in the future", in + "." + b64url(identity::es256_sign(retired_key_->pkey, in))});
  }
  // Mangled shapes.
  forged.push_back({"two parts", parts[0] + "." + parts[1]});
  forged.push_back(
      {"truncated signature", parts[0] + "." + parts[1] + "." + parts[2].substr(0, 20)});
  forged.push_back({"garbage", "not-a-token"});

  for (const auto& [what, token] : forged) {
    HttpResponse r = http("GET", server_->url("/api/me"), "", {bearer(token)});
    EXPECT_EQ(r.status, 401) << what << ": " << r.body;
    EXPECT_EQ(r.body.find(b.email), std::string::npos) << what;
  }
  // The genuine token still works after all that.
  EXPECT_EQ(me_status(*server_, a.access_token), 200);
}

// ------------------------------------------------------------------------------ cookie sessions

TEST_F(Identity, CookieSessionNeedsCsrfTokenForUnsafeRequests) {
  Account a = signup(*server_, "cookie");
  HttpResponse r = http("POST", server_->url("/api/auth/login"),
                        boost::json::serialize(object{
                            {"email", a.email}, {"password", a.password}, {"session", "cookie"}}));
  ASSERT_EQ(r.status, 200) << r.body;
  object body = boost::json::parse(r.body).as_object();
  std::string csrf = str(body, "csrf_token");
  EXPECT_FALSE(csrf.empty()) << r.body;
  EXPECT_FALSE(body.contains("access_token")) << "cookie sessions keep tokens out of the page";
  EXPECT_FALSE(body.contains("refresh_token"));
  std::string session = r.cookie("hsea_session");
  ASSERT_FALSE(session.empty()) << "no hsea_session cookie";
  EXPECT_NE(session.find("; HttpOnly"), std::string::npos) << session;
  EXPECT_NE(session.find("SameSite=Lax"), std::string::npos) << session;
  EXPECT_NE(session.find("Path=/"), std::string::npos) << session;
  EXPECT_EQ(session.find("Secure"), std::string::npos) << "http public URL: " << session;
  // The page reads the CSRF token from the non-HttpOnly hsea_csrf cookie after a reload.
  std::string csrf_cookie = r.cookie("hsea_csrf");
  EXPECT_EQ(cookie_pair(csrf_cookie), "hsea_csrf=" + csrf) << "hsea_csrf cookie missing";
  EXPECT_EQ(csrf_cookie.find("HttpOnly"), std::string::npos) << csrf_cookie;
  std::string cookie = "Cookie: " + cookie_pair(session);

  HttpResponse me = http("GET", server_->url("/api/me"), "", {cookie});
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(str(json_of(me), "id"), a.user_id);

  std::string rename = R"({"name":"Cookie Monster"})";
  HttpResponse no_csrf = http("PATCH", server_->url("/api/me"), rename, {cookie});
  EXPECT_EQ(no_csrf.status, 403) << no_csrf.body;
  HttpResponse wrong_csrf =
      http("PATCH", server_->url("/api/me"), rename, {cookie, "X-CSRF-Token: " + csrf + "x"});
  EXPECT_EQ(wrong_csrf.status, 403) << wrong_csrf.body;
  EXPECT_EQ(str(json_of(http("GET", server_->url("/api/me"), "", {cookie})), "name"),
            "Test Person");
  HttpResponse with_csrf =
      http("PATCH", server_->url("/api/me"), rename, {cookie, "X-CSRF-Token: " + csrf});
  EXPECT_EQ(with_csrf.status, 200) << with_csrf.body;
  EXPECT_EQ(str(json_of(with_csrf), "name"), "Cookie Monster");

  // A tampered cookie is no session at all.
  std::string tampered = cookie;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(http("GET", server_->url("/api/me"), "", {tampered}).status, 401);

  // Signing out ends the session and clears the cookie.
  HttpResponse out =
      http("POST", server_->url("/api/auth/logout"), "", {cookie, "X-CSRF-Token: " + csrf});
  EXPECT_EQ(out.status, 204) << out.body;
  EXPECT_NE(out.cookie("hsea_session").find("Max-Age=0"), std::string::npos);
  EXPECT_EQ(http("GET", server_->url("/api/me"), "", {cookie}).status, 401);
}

TEST(IdentityHttps, CookieIsSecureWhenThePublicUrlIsHttps) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_PUBLIC_URL", "https://app.example.test"}});
  wait_for_keys(server);
  std::string email = unique_email("secure");
  object body{{"email", email},
              {"password", kGoodPassword},
              {"name", "Secure Person"},
              {"organization_name", "Secure Org"},
              {"session", "cookie"}};
  HttpResponse r = http("POST", server.url("/api/auth/signup"), boost::json::serialize(body));
  ASSERT_EQ(r.status, 201) << r.body;
  std::string session = r.cookie("hsea_session");
  EXPECT_NE(session.find("; Secure"), std::string::npos) << session;
  EXPECT_NE(session.find("HttpOnly"), std::string::npos) << session;
  EXPECT_NE(session.find("SameSite=Lax"), std::string::npos) << session;
  HttpResponse me = http("GET", server.url("/api/me"), "", {"Cookie: " + cookie_pair(session)});
  EXPECT_EQ(me.status, 200) << me.body;
}

// ------------------------------------------------------------------------------ /api/me

TEST_F(Identity, GetAndPatchMe) {
  Account a = signup(*server_, "me");
  HttpResponse me = http("GET", server_->url("/api/me"), "", {bearer(a.access_token)});
  ASSERT_EQ(me.status, 200) << me.body;
  object body = json_of(me);
  EXPECT_EQ(str(body, "id"), a.user_id);
  EXPECT_EQ(str(body, "email"), a.email);
  EXPECT_TRUE(body.at("email_verified").is_bool());
  EXPECT_TRUE(body.at("mfa_enabled").is_bool());
  EXPECT_EQ(str(body, "current_tenant_id"), a.tenant_id);
  EXPECT_FALSE(body.contains("password_hash"));

  HttpResponse patched = http("PATCH", server_->url("/api/me"), R"({"name":"Renamed Person"})",
                              {bearer(a.access_token)});
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(str(json_of(patched), "name"), "Renamed Person");
  EXPECT_EQ(
      str(json_of(http("GET", server_->url("/api/me"), "", {bearer(a.access_token)})), "name"),
      "Renamed Person");
  // Only the name is changeable here.
  HttpResponse email =
      http("PATCH", server_->url("/api/me"), R"({"name":"X","email":"evil@example.test"})",
           {bearer(a.access_token)});
  EXPECT_EQ(email.status, 422) << email.body;
  HttpResponse empty =
      http("PATCH", server_->url("/api/me"), R"({"name":""})", {bearer(a.access_token)});
  EXPECT_EQ(empty.status, 422) << empty.body;
  EXPECT_EQ(http("GET", server_->url("/api/me")).status, 401);
}

TEST_F(Identity, SessionsAreListedAndRevocable) {
  Account a = signup(*server_, "sessions");
  Account b = signup(*server_, "sessions-other");
  auto [firefox_access, firefox_refresh] =
      login(*server_, a, {"User-Agent: " + std::string(kFirefoxAgent)});
  auto [cli_access, cli_refresh] = login(*server_, a, {"User-Agent: hsea-cli/1.0"});
  std::string firefox_sid = str(jwt_part(firefox_access, 1), "sid");
  std::string cli_sid = str(jwt_part(cli_access, 1), "sid");

  HttpResponse list = http("GET", server_->url("/api/me/sessions"), "", {bearer(firefox_access)});
  ASSERT_EQ(list.status, 200) << list.body;
  object list_body = json_of(list);
  const auto& data = list_body.at("data").as_array();
  EXPECT_EQ(data.size(), 3u) << list.body;  // sign-up, Firefox, CLI
  int current = 0;
  bool saw_firefox = false;
  for (const auto& v : data) {
    const object& s = v.as_object();
    EXPECT_EQ(str(s, "ip"), "127.0.0.1") << list.body;
    EXPECT_FALSE(str(s, "last_seen_at").empty());
    EXPECT_FALSE(str(s, "created_at").empty());
    EXPECT_TRUE(s.contains("device")) << "no device: " << list.body;
    if (s.at("current").as_bool()) {
      ++current;
      EXPECT_EQ(str(s, "id"), firefox_sid);
    }
    if (str(s, "id") == firefox_sid) {
      saw_firefox = true;
      EXPECT_EQ(str(s, "user_agent"), kFirefoxAgent);
      std::string device = str(s, "device");
      EXPECT_NE(device.find("Firefox"), std::string::npos) << device;
      EXPECT_NE(device.find("Linux"), std::string::npos) << device;
    }
    if (str(s, "id") == cli_sid) {
      EXPECT_EQ(str(s, "user_agent"), "hsea-cli/1.0");
    }
  }
  EXPECT_EQ(current, 1) << list.body;
  EXPECT_TRUE(saw_firefox);
  // Another user's sessions are not listed.
  EXPECT_EQ(list.body.find(str(jwt_part(b.access_token, 1), "sid")), std::string::npos);

  // Revoking another of one's own sessions ends it.
  HttpResponse revoke =
      http("DELETE", server_->url("/api/me/sessions/" + cli_sid), "", {bearer(firefox_access)});
  EXPECT_EQ(revoke.status, 204) << revoke.body;
  EXPECT_EQ(me_status(*server_, cli_access), 401);
  HttpResponse refresh = http("POST", server_->url("/api/auth/refresh"),
                              boost::json::serialize(object{{"refresh_token", cli_refresh}}));
  EXPECT_EQ(refresh.status, 401);
  EXPECT_EQ(me_status(*server_, firefox_access), 200);
  HttpResponse after = http("GET", server_->url("/api/me/sessions"), "", {bearer(firefox_access)});
  EXPECT_EQ(after.body.find(cli_sid), std::string::npos) << after.body;

  // Another user's session id is not found, and that session lives on.
  std::string b_sid = str(jwt_part(b.access_token, 1), "sid");
  HttpResponse foreign =
      http("DELETE", server_->url("/api/me/sessions/" + b_sid), "", {bearer(firefox_access)});
  EXPECT_EQ(foreign.status, 404) << foreign.body;
  EXPECT_EQ(me_status(*server_, b.access_token), 200);
  EXPECT_EQ(
      http("DELETE", server_->url("/api/me/sessions/not-a-uuid"), "", {bearer(firefox_access)})
          .status,
      404);
  EXPECT_EQ(http("DELETE", server_->url("/api/me/sessions/" + core::uuid_v7()), "",
                 {bearer(firefox_access)})
                .status,
            404);
}

TEST_F(Identity, DeleteMeIsRefusedForTheOnlyOwner) {
  Account a = signup(*server_, "soleowner");
  HttpResponse r = http("DELETE", server_->url("/api/me"), "", {bearer(a.access_token)});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(me_status(*server_, a.access_token), 200);
  EXPECT_EQ(login_request(*server_, a.email, a.password).status, 200);
}

TEST_F(Identity, DeleteMeRemovesAMembersPersonalData) {
  Account owner = signup(*server_, "owner");
  Account member = signup(*server_, "member");
  // The member leaves their own tenant (to another owner) and joins the owner's as a member.
  // (The new owner first: a tenant never has no owner, not even between two statements.)
  testkit::sql(db_->admin_url(),
               "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
               {member.tenant_id, owner.user_id});
  testkit::sql(db_->admin_url(), "UPDATE memberships SET role = 'member' WHERE user_id = $1::uuid",
               {member.user_id});
  testkit::sql(db_->admin_url(),
               "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'member')",
               {owner.tenant_id, member.user_id});
  auto [access, refresh] = login(*server_, member);
  ASSERT_EQ(me_status(*server_, access), 200);

  HttpResponse r = http("DELETE", server_->url("/api/me"), "", {bearer(access)});
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(me_status(*server_, access), 401);
  EXPECT_EQ(me_status(*server_, member.access_token), 401);
  EXPECT_EQ(login_request(*server_, member.email, member.password).status, 401);
  HttpResponse refreshed = http("POST", server_->url("/api/auth/refresh"),
                                boost::json::serialize(object{{"refresh_token", refresh}}));
  EXPECT_EQ(refreshed.status, 401);

  for (const char* table : {"users WHERE id", "memberships WHERE user_id", "sessions WHERE user_id",
                            "refresh_tokens WHERE user_id"}) {
    auto rows =
        testkit::sql(db_->admin_url(), fmt::format("SELECT count(*) FROM {} = $1::uuid", table),
                     {member.user_id});
    EXPECT_EQ(rows[0][0], "0") << table;
  }
  auto mentions =
      testkit::sql(db_->admin_url(), "SELECT count(*) FROM audit_logs a WHERE a::text ILIKE $1",
                   {"%" + member.email + "%"});
  EXPECT_EQ(mentions[0][0], "0") << "the e-mail address survives in the audit log";
  // The owner and their tenant are untouched; the member is gone from it.
  EXPECT_EQ(me_status(*server_, owner.access_token), 200);
  HttpResponse members =
      http("GET", server_->url("/api/members"), "", {bearer(owner.access_token)});
  EXPECT_EQ(members.status, 200) << members.body;
  EXPECT_EQ(members.body.find(member.user_id), std::string::npos) << members.body;
  // The address is free again.
  EXPECT_EQ(signup_request(*server_, member.email, kGoodPassword).status, 201);
}

// ------------------------------------------------------------------------------ API keys

TEST_F(Identity, ApiKeyIsShownOnceAndAuthenticates) {
  Account a = signup(*server_, "apikey");
  HttpResponse created =
      http("POST", server_->url("/api/api-keys"), R"({"name":"deploy bot","scopes":["read"]})",
           {bearer(a.access_token)});
  ASSERT_EQ(created.status, 201) << created.body;
  object body = json_of(created);
  std::string key = str(body, "key"), id = str(body, "id");
  ASSERT_EQ(key.rfind("hsea_", 0), 0u) << key;
  EXPECT_EQ(str(body, "name"), "deploy bot");
  EXPECT_FALSE(str(body, "prefix").empty());
  EXPECT_EQ(key.find(str(body, "prefix")), 5u);
  ASSERT_EQ(body.at("scopes").as_array().size(), 1u);
  EXPECT_EQ(body.at("scopes").as_array()[0].as_string(), "read");
  // At least 128 bits of randomness in the secret part.
  std::string secret = key.substr(key.find('_', 5) + 1);  // hsea_<prefix>_<secret>
  EXPECT_GE(unb64url(secret).size(), 16u) << key;
  EXPECT_NE(create_api_key(*server_, a).key, key);

  // Stored hashed: the database never holds the key.
  auto stored =
      testkit::sql(db_->admin_url(), "SELECT count(*) FROM api_keys k WHERE k::text LIKE $1",
                   {"%" + secret + "%"});
  EXPECT_EQ(stored[0][0], "0");

  HttpResponse list = http("GET", server_->url("/api/api-keys"), "", {bearer(a.access_token)});
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(list.body.find(secret), std::string::npos);
  EXPECT_NE(list.body.find(id), std::string::npos);
  object list_body = json_of(list);
  for (const auto& k : list_body.at("data").as_array()) {
    EXPECT_FALSE(k.as_object().contains("key")) << list.body;
  }
  HttpResponse one = http("GET", server_->url("/api/api-keys/" + id), "", {bearer(a.access_token)});
  ASSERT_EQ(one.status, 200) << one.body;
  EXPECT_FALSE(json_of(one).contains("key"));
  EXPECT_EQ(one.body.find(secret), std::string::npos);

  HttpResponse tenant = http("GET", server_->url("/api/tenant"), "", {bearer(key)});
  ASSERT_EQ(tenant.status, 200) << tenant.body;
  EXPECT_EQ(str(json_of(tenant), "id"), a.tenant_id);
  // A wrong secret with a real prefix is refused.
  std::string wrong = key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(wrong)}).status, 401);
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer("hsea_nonsense")}).status, 401);
}

TEST_F(Identity, ReadOnlyApiKeyCannotWrite) {
  Account a = signup(*server_, "readonly");
  ApiKey read = create_api_key(*server_, a, R"(["read"])");
  ApiKey write = create_api_key(*server_, a, R"(["write"])");
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(read.key)}).status, 200);
  HttpResponse patch =
      http("PATCH", server_->url("/api/tenant"), R"({"name":"Hacked"})", {bearer(read.key)});
  EXPECT_EQ(patch.status, 403) << patch.body;
  HttpResponse post = http("POST", server_->url("/api/api-keys"),
                           R"({"name":"escalate","scopes":["write"]})", {bearer(read.key)});
  EXPECT_EQ(post.status, 403) << post.body;
  HttpResponse del =
      http("DELETE", server_->url("/api/api-keys/" + write.id), "", {bearer(read.key)});
  EXPECT_EQ(del.status, 403) << del.body;
  EXPECT_NE(
      http("GET", server_->url("/api/tenant"), "", {bearer(a.access_token)}).body.find("Acme Inc"),
      std::string::npos)
      << "the read-only key changed the tenant";
  // The write key may (so the 403 above is about the scope).
  HttpResponse allowed =
      http("PATCH", server_->url("/api/tenant"), R"({"name":"Renamed Inc"})", {bearer(write.key)});
  EXPECT_EQ(allowed.status, 200) << allowed.body;
  // Keys never act as a user.
  EXPECT_EQ(http("GET", server_->url("/api/me"), "", {bearer(write.key)}).status, 403);
}

TEST_F(Identity, ApiKeyActsOnlyForItsOwnTenant) {
  Account a = signup(*server_, "keytenant");
  Account b = signup(*server_, "keytenant-other");
  ApiKey key = create_api_key(*server_, a);
  HttpResponse other = http("GET", server_->url("/api/tenant"), "",
                            {bearer(key.key), "X-Tenant-Id: " + b.tenant_id});
  EXPECT_EQ(other.status, 403) << other.body;
  EXPECT_EQ(other.body.find(b.tenant_id), std::string::npos);
  HttpResponse own = http("GET", server_->url("/api/tenant"), "",
                          {bearer(key.key), "X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(own.status, 200) << own.body;
  // Another tenant's owner cannot see or revoke the key.
  EXPECT_EQ(
      http("GET", server_->url("/api/api-keys/" + key.id), "", {bearer(b.access_token)}).status,
      404);
  EXPECT_EQ(
      http("DELETE", server_->url("/api/api-keys/" + key.id), "", {bearer(b.access_token)}).status,
      404);
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(key.key)}).status, 200);
}

TEST_F(Identity, DeletedApiKeyIsRefused) {
  Account a = signup(*server_, "keydelete");
  ApiKey key = create_api_key(*server_, a);
  ASSERT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(key.key)}).status, 200);
  HttpResponse del =
      http("DELETE", server_->url("/api/api-keys/" + key.id), "", {bearer(a.access_token)});
  EXPECT_EQ(del.status, 204) << del.body;
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(key.key)}).status, 401);
  EXPECT_EQ(
      http("GET", server_->url("/api/api-keys/" + key.id), "", {bearer(a.access_token)}).status,
      404);
  EXPECT_EQ(
      http("DELETE", server_->url("/api/api-keys/" + key.id), "", {bearer(a.access_token)}).status,
      404);
}

TEST_F(Identity, ApiKeyRecordsLastUsedAt) {
  Account a = signup(*server_, "lastused");
  ApiKey key = create_api_key(*server_, a);
  HttpResponse before =
      http("GET", server_->url("/api/api-keys/" + key.id), "", {bearer(a.access_token)});
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_TRUE(json_of(before).at("last_used_at").is_null()) << before.body;
  ASSERT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(key.key)}).status, 200);
  HttpResponse after =
      http("GET", server_->url("/api/api-keys/" + key.id), "", {bearer(a.access_token)});
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_TRUE(json_of(after).at("last_used_at").is_string()) << after.body;
}

TEST_F(Identity, ApiKeyScopesAndExpiry) {
  Account a = signup(*server_, "keyscopes");
  ApiKey tenant_read = create_api_key(*server_, a, R"(["tenant:read"])");
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(tenant_read.key)}).status, 200);
  EXPECT_EQ(
      http("PATCH", server_->url("/api/tenant"), R"({"name":"Nope"})", {bearer(tenant_read.key)})
          .status,
      403);
  ApiKey members_read = create_api_key(*server_, a, R"(["members:read"])");
  EXPECT_EQ(http("GET", server_->url("/api/tenant"), "", {bearer(members_read.key)}).status, 403);
  EXPECT_EQ(http("GET", server_->url("/api/members"), "", {bearer(members_read.key)}).status, 200);

  HttpResponse unknown_scope = http("POST", server_->url("/api/api-keys"),
                                    R"({"name":"x","scopes":["admin"]})", {bearer(a.access_token)});
  EXPECT_EQ(unknown_scope.status, 422) << unknown_scope.body;
  HttpResponse bad_date = http("POST", server_->url("/api/api-keys"),
                               R"({"name":"x","scopes":["read"],"expires_at":"next tuesday"})",
                               {bearer(a.access_token)});
  EXPECT_EQ(bad_date.status, 422) << bad_date.body;

  HttpResponse expired =
      http("POST", server_->url("/api/api-keys"),
           R"({"name":"old","scopes":["read"],"expires_at":"2020-01-01T00:00:00Z"})",
           {bearer(a.access_token)});
  ASSERT_EQ(expired.status, 201) << expired.body;
  EXPECT_EQ(
      http("GET", server_->url("/api/tenant"), "", {bearer(str(json_of(expired), "key"))}).status,
      401);
  HttpResponse later =
      http("POST", server_->url("/api/api-keys"),
           R"({"name":"new","scopes":["read"],"expires_at":"2999-01-01T00:00:00Z"})",
           {bearer(a.access_token)});
  ASSERT_EQ(later.status, 201) << later.body;
  EXPECT_TRUE(json_of(later).at("expires_at").is_string());
  EXPECT_EQ(
      http("GET", server_->url("/api/tenant"), "", {bearer(str(json_of(later), "key"))}).status,
      200);
}

TEST(IdentityApiKeys, RotatedKeyWorksDuringTheGracePeriodOnly) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_API_KEY_ROTATION_GRACE_SECONDS", "1"}});
  wait_for_keys(server);
  Account a = signup(server, "rotate");
  ApiKey old_key = create_api_key(server, a);
  HttpResponse rotated = http("POST", server.url("/api/api-keys/" + old_key.id + "/rotate"), "",
                              {bearer(a.access_token)});
  ASSERT_EQ(rotated.status, 201) << rotated.body;
  object body = json_of(rotated);
  std::string new_key = str(body, "key");
  ASSERT_EQ(new_key.rfind("hsea_", 0), 0u) << rotated.body;
  EXPECT_NE(new_key, old_key.key);
  EXPECT_NE(str(body, "id"), old_key.id);
  EXPECT_EQ(body.at("scopes").as_array().size(), 1u);
  EXPECT_EQ(http("GET", server.url("/api/tenant"), "", {bearer(new_key)}).status, 200);
  EXPECT_EQ(http("GET", server.url("/api/tenant"), "", {bearer(old_key.key)}).status, 200)
      << "the old key must keep working during the grace period";
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(http("GET", server.url("/api/tenant"), "", {bearer(old_key.key)}).status, 401);
  EXPECT_EQ(http("GET", server.url("/api/tenant"), "", {bearer(new_key)}).status, 200);
}

// ------------------------------------------------------------------------------ secrets

TEST(IdentitySecrets, PasswordsTokensAndKeysNeverAppearInTheServerOutput) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_LOG_LEVEL", "debug"}});
  wait_for_keys(server);
  std::vector<std::string> secrets;
  Account a = signup(server, "secrets");
  secrets.insert(secrets.end(), {a.password, a.access_token, a.refresh_token});
  std::string wrong = "Wrong-Secret-Password-42";
  secrets.push_back(wrong);
  EXPECT_EQ(login_request(server, a.email, wrong).status, 401);
  std::string weak = "weakpw-Zq";
  secrets.push_back(weak);
  EXPECT_EQ(signup_request(server, unique_email("weak"), weak).status, 422);
  auto [access, refresh] = login(server, a);
  secrets.insert(secrets.end(), {access, refresh});
  HttpResponse r = http("POST", server.url("/api/auth/refresh"),
                        boost::json::serialize(object{{"refresh_token", refresh}}));
  EXPECT_EQ(r.status, 200);
  secrets.push_back(str(json_of(r), "access_token"));
  secrets.push_back(str(json_of(r), "refresh_token"));
  // Reuse, and a forged token, take the logging paths of refusals.
  http("POST", server.url("/api/auth/refresh"),
       boost::json::serialize(object{{"refresh_token", refresh}}));
  http("GET", server.url("/api/me"), "", {bearer(access + "x")});
  HttpResponse cookie =
      http("POST", server.url("/api/auth/login"),
           boost::json::serialize(
               object{{"email", a.email}, {"password", a.password}, {"session", "cookie"}}));
  EXPECT_EQ(cookie.status, 200);
  std::string session = cookie_pair(cookie.cookie("hsea_session"));
  secrets.push_back(session.substr(session.find('=') + 1));
  secrets.push_back(str(boost::json::parse(cookie.body).as_object(), "csrf_token"));
  http("PATCH", server.url("/api/me"), R"({"name":"X"})", {"Cookie: " + session});
  ApiKey key = create_api_key(server, a);
  secrets.push_back(key.key);
  http("GET", server.url("/api/tenant"), "", {bearer(key.key)});
  http("GET", server.url("/api/tenant"), "", {bearer(key.key + "x")});
  std::string out = server.output();
  ASSERT_NE(out.find("listening"), std::string::npos);
  for (const auto& s : secrets) {
    ASSERT_FALSE(s.empty());
    EXPECT_EQ(out.find(s), std::string::npos) << "secret in the server output: " << s;
    // Tokens are also refused in part (e.g. a JWT's signature or a key's secret half).
    if (s.size() > 40) {
      EXPECT_EQ(out.find(s.substr(s.size() - 24)), std::string::npos) << s;
    }
  }
}

}  // namespace
}  // namespace hsea

namespace hsea {
namespace {

TEST(IdentityThrottle, FailedSignInsAreThrottledPerClientAddress) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_LOGIN_MAX_FAILURES_PER_IP", "3"}});
  auto signup = testkit::http("POST", server.url("/api/auth/signup"),
                              R"({"email":"ip@example.com","password":"a long enough pass",)"
                              R"("name":"I","organization_name":"Ip"})");
  ASSERT_EQ(signup.status, 201) << signup.body;
  // Three wrong guesses against three different accounts from one address...
  for (const char* who : {"a@example.com", "b@example.com", "ip@example.com"}) {
    auto r = testkit::http("POST", server.url("/api/auth/login"),
                           std::string(R"({"email":")") + who + R"(","password":"wrong guess 1"})");
    EXPECT_EQ(r.status, 401) << r.body;
  }
  // ...and that address is refused, even with the right password of a fourth attempt.
  auto refused = testkit::http("POST", server.url("/api/auth/login"),
                               R"({"email":"ip@example.com","password":"a long enough pass"})");
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_FALSE(refused.header("retry-after").empty());
}

// The auth cache must bind the session to its user. A validly signed token whose `sub` is another
// user than the owner of its live session was answered as that user once the session's owner had
// warmed the cache. The test signs with a key it inserted (as the Identity fixture does), and the
// server runs one I/O thread so both requests meet the same cache.
TEST(IdentityAuthCache, TokenNamingAnotherUserThanItsSessionIsRefusedAlsoWhenCached) {
  TestDatabase db;
  EcKey key;
  testkit::sql(db.admin_url(),
               "INSERT INTO signing_keys (kid, algorithm, public_pem, sealed_private, "
               "created_at, retired_at) VALUES ($1, 'ES256', $2, 'not-used', "
               "now() - interval '30 minutes', now() - interval '1 minute')",
               {kRetiredKid, key.public_pem()});
  TestServer server(db, {{"HSEA_THREADS", "1"}});
  wait_for_keys(server);
  Account a = signup(server, "cache-owner");
  Account b = signup(server, "cache-other");
  object header{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", kRetiredKid}};
  auto sign = [&](const object& payload) {
    std::string input = jwt(header, payload);
    return input + "." + b64url(identity::es256_sign(key.pkey, input));
  };
  object claims = jwt_part(a.access_token, 1);
  object other = claims;
  other["sub"] = b.user_id;  // a's session and tenant, b as the caller
  std::string forged = sign(other);

  EXPECT_EQ(me_status(server, forged), 401);  // cold (nothing cached yet): not b's session
  ASSERT_EQ(me_status(server, sign(claims)), 200) << "the test's own signing is broken";
  for (int i = 0; i < 3; ++i) {
    // a's own requests put a's session into the cache...
    ASSERT_EQ(http("GET", server.url("/api/members"), "", {bearer(a.access_token)}).status, 200);
    // ...and the forged token must still not get in as b.
    HttpResponse r = http("GET", server.url("/api/members"), "", {bearer(forged)});
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(me_status(server, forged), 401);
  }
}

// Each sign-up costs an Argon2id hash, so sign-ups are limited per client address (per /64 for
// IPv6), checked before hashing. The client address comes from X-Forwarded-For here
// (HSEA_TRUST_FORWARDED_FOR), so the test can speak from several addresses.
TEST(IdentityThrottle, SignUpsAreThrottledPerClientAddress) {
  TestDatabase db;
  TestServer server(db,
                    {{"HSEA_SIGNUPS_PER_IP_PER_HOUR", "3"}, {"HSEA_TRUST_FORWARDED_FOR", "true"}});
  auto signup_from = [&](const std::string& ip, const std::string& email) {
    object body{{"email", email},
                {"password", kGoodPassword},
                {"name", "Throttled"},
                {"organization_name", "Throttled Org"}};
    return http("POST", server.url("/api/auth/signup"), boost::json::serialize(body),
                {"X-Forwarded-For: " + ip});
  };
  auto users_with = [&](const std::string& email) {
    return testkit::sql(db.admin_url(), "SELECT count(*) FROM users WHERE email_index = $1",
                        {testkit::email_index(email)})[0][0];
  };
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(signup_from("198.51.100.7", unique_email("throttle")).status, 201);
  }
  std::string refused_email = unique_email("throttle");
  HttpResponse refused = signup_from("198.51.100.7", refused_email);
  EXPECT_EQ(refused.status, 429) << refused.body;
  EXPECT_EQ(refused.header("content-type"), "application/problem+json");
  EXPECT_EQ(str(json_of(refused), "code"), "rate_limited");
  std::string retry = refused.header("retry-after");
  ASSERT_FALSE(retry.empty());
  EXPECT_GT(std::stoi(retry), 0);
  EXPECT_LE(std::stoi(retry), 3600);
  EXPECT_EQ(users_with(refused_email), "0");
  // A duplicate e-mail also costs a hash: it counts, and is refused the same way when over.
  EXPECT_EQ(signup_from("198.51.100.7", refused_email).status, 429);
  // Other addresses have their own allowance.
  EXPECT_EQ(signup_from("203.0.113.9", unique_email("throttle")).status, 201);

  // IPv6: one /64 is one client.
  for (const char* ip :
       {"2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:ffff:ffff:ffff"}) {
    EXPECT_EQ(signup_from(ip, unique_email("throttle6")).status, 201) << ip;
  }
  EXPECT_EQ(signup_from("2001:DB8:1:2:abcd::9", unique_email("throttle6")).status, 429);
  EXPECT_EQ(signup_from("2001:db8:1:3::1", unique_email("throttle6")).status, 201);
  // Sign-in is not affected by the sign-up limit.
  EXPECT_EQ(login_request(server, "nobody@example.test", "wrong password 1").status, 401);
}

TEST(IdentityKeys, ApiKeyUsageIsCountedPerKey) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_USAGE_FLUSH_SECONDS", "1"}});
  auto signup = testkit::http("POST", server.url("/api/auth/signup"),
                              R"({"email":"usage@example.com","password":"a long enough pass",)"
                              R"("name":"U","organization_name":"Usage"})");
  ASSERT_EQ(signup.status, 201) << signup.body;
  std::string token(json_of(signup).at("access_token").as_string());
  auto make = [&](const char* name) {
    auto r = testkit::http("POST", server.url("/api/api-keys"),
                           std::string(R"({"name":")") + name + R"(","scopes":["read"]})",
                           {"Authorization: Bearer " + token});
    return json_of(r);
  };
  auto busy = make("busy"), idle = make("idle");
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(testkit::http("GET", server.url("/api/tenant"), "",
                            {"Authorization: Bearer " + str(busy, "key")})
                  .status,
              200);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // two flush intervals
  auto list = json_of(
      testkit::http("GET", server.url("/api/api-keys"), "", {"Authorization: Bearer " + token}));
  std::map<std::string, std::int64_t> counts;
  for (const auto& k : list.at("data").as_array()) {
    counts[str(k.as_object(), "name")] = k.as_object().at("request_count").as_int64();
  }
  EXPECT_EQ(counts["busy"], 7);
  EXPECT_EQ(counts["idle"], 0);
}

TEST(IdentityKeys, TokensSignedAfterARotationOnAnotherNodeAreAccepted) {
  TestDatabase db;
  TestServer old_node(db);
  auto before = testkit::http("GET", old_node.url("/.well-known/jwks.json"));
  ASSERT_EQ(before.status, 200);
  auto rotated = testkit::run_hsea(
      {"keys", "rotate"}, {{"HSEA_ENV", "test"},
                           {"HSEA_SECRET_KEY", "test-secret-key-0123456789abcdef0123456789"},
                           {"HSEA_DATABASE_URL", db.app_url()}});
  ASSERT_EQ(rotated.exit_code, 0) << rotated.output;
  // A node started after the rotation signs with the new key.
  TestServer new_node(db);
  auto signup = testkit::http("POST", new_node.url("/api/auth/signup"),
                              R"({"email":"rotate@example.com","password":"a long enough pass",)"
                              R"("name":"R","organization_name":"Rotate"})");
  ASSERT_EQ(signup.status, 201) << signup.body;
  std::string token(boost::json::parse(signup.body).as_object().at("access_token").as_string());
  // The old node has not seen that key yet: it reloads its keys and accepts the token.
  auto me = testkit::http("GET", old_node.url("/api/me"), "", {"Authorization: Bearer " + token});
  EXPECT_EQ(me.status, 200) << me.body;
  auto after = testkit::http("GET", old_node.url("/.well-known/jwks.json"));
  EXPECT_EQ(boost::json::parse(after.body).as_object().at("keys").as_array().size(),
            boost::json::parse(before.body).as_object().at("keys").as_array().size() + 1);
}

}  // namespace
}  // namespace hsea
