// Black-box tests of hostile and malformed client input: the real `hsea` binary against a real
// PostgreSQL. Every refusal must be an RFC 9457 problem with a 4xx status that changes nothing;
// input the server can accept (an odd User-Agent) must not break the request.
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <yaml-cpp/yaml.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/ids.hpp"
#include "identity/tokens.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::array;
using boost::json::object;
using boost::json::value;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;
using testkit::TestDatabase;
using testkit::TestServer;

constexpr const char* kRetiredKid = "bad-input-retired-key";

std::string bearer(const std::string& credential) { return "Authorization: Bearer " + credential; }

// A refusal: 4xx, a problem document whose status is the response's.
void expect_problem(const HttpResponse& r, int status, const std::string& what = "") {
  if (status == 0) {
    EXPECT_GE(r.status, 400) << what << ": " << r.body;
    EXPECT_LT(r.status, 500) << what << ": " << r.body;
  } else {
    EXPECT_EQ(r.status, status) << what << ": " << r.body;
  }
  EXPECT_EQ(r.header("content-type"), "application/problem+json") << what << ": " << r.body;
  boost::system::error_code ec;
  value v = boost::json::parse(r.body, ec);
  ASSERT_FALSE(ec) << what << ": not JSON: " << r.body;
  ASSERT_TRUE(v.is_object()) << what;
  ASSERT_TRUE(v.as_object().contains("status")) << what << ": " << r.body;
  EXPECT_EQ(v.as_object().at("status").as_int64(), r.status) << what;
  EXPECT_FALSE(str(v.as_object(), "code").empty()) << what;
}

// Whether errors[] names `field` (a JSON pointer) or something inside it.
bool names_field(const HttpResponse& r, const std::string& field) {
  boost::system::error_code ec;
  value v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object() || !v.as_object().contains("errors")) return false;
  for (const auto& e : v.as_object().at("errors").as_array()) {
    std::string f = str(e.as_object(), "field");
    if (f == field || f.starts_with(field + "/")) return true;
  }
  return false;
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

class BadInput : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    // A key the test holds, retired a minute ago: the server still verifies with it, so the test
    // can sign tokens with chosen claims.
    retired_key_ = new EcKey();
    testkit::sql(db_->admin_url(),
                 "INSERT INTO signing_keys (kid, algorithm, public_pem, sealed_private, "
                 "created_at, retired_at) VALUES ($1, 'ES256', $2, 'not-used', "
                 "now() - interval '30 minutes', now() - interval '1 minute')",
                 {kRetiredKid, retired_key_->public_pem()});
    server_ = new TestServer(*db_, {{"HSEA_LOGIN_MAX_FAILURES_PER_ACCOUNT", "3"}});
    for (int i = 0; i < 200; ++i) {
      if (http("GET", server_->url("/.well-known/jwks.json")).status == 200) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    delete retired_key_;
    delete db_;
  }

  static std::string url(const std::string& path) { return server_->url(path); }

  static testkit::Account signup(const std::string& org) { return testkit::sign_up(*server_, org); }

  static HttpResponse login(const std::string& email, const std::string& password,
                            const std::vector<std::string>& headers = {}) {
    object body{{"email", email}, {"password", password}};
    return http("POST", url("/api/auth/login"), boost::json::serialize(body), headers);
  }

  static std::string scalar(const std::string& statement,
                            const std::vector<std::string>& params = {}) {
    auto rows = testkit::sql(db_->admin_url(), statement, params);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }

  // Every row of every table, except columns that reads touch (a session's last_seen_at, a key's
  // usage): equal fingerprints mean no request changed anything.
  static std::map<std::string, std::string> fingerprint() {
    std::map<std::string, std::string> out;
    for (const auto& row : testkit::sql(
             db_->admin_url(),
             "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")) {
      const std::string& table = row[0];
      std::string rows = "t::text";
      if (table == "sessions") rows = "(t.id, t.revoked_at, t.user_agent)::text";
      if (table == "api_keys") rows = "(t.id, t.name, t.scopes, t.expires_at, t.revoked_at)::text";
      out[table] = scalar("SELECT count(*) || ':' || md5(coalesce(string_agg(" + rows +
                          ", '|' ORDER BY " + rows + "), '')) FROM " + table + " t");
    }
    return out;
  }

  static TestDatabase* db_;
  static TestServer* server_;
  static EcKey* retired_key_;
};
TestDatabase* BadInput::db_ = nullptr;
TestServer* BadInput::server_ = nullptr;
EcKey* BadInput::retired_key_ = nullptr;

void expect_same(const std::map<std::string, std::string>& before,
                 const std::map<std::string, std::string>& after, const std::string& what) {
  for (const auto& [table, print] : before) {
    auto it = after.find(table);
    EXPECT_TRUE(it != after.end() && it->second == print) << what << " changed " << table;
  }
}

// ------------------------------------------------------------------ A: NUL bytes (finding 4)

TEST_F(BadInput, NulInTheLoginEmailDoesNotBypassTheAccountThrottle) {
  testkit::Account victim = signup("Victim");
  // The suite's server allows 3 failures per account.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(login(victim.email, "wrong-password-123").status, 401);
  HttpResponse locked = login(victim.email, victim.password);
  expect_problem(locked, 429, "locked account");
  std::string sessions_before =
      scalar("SELECT count(*) FROM sessions WHERE user_id = $1", {victim.user_id});

  // The same account under another spelling, with the right password: still refused.
  for (const std::string& variant :
       {victim.email + std::string("\0x", 2), victim.email + std::string(1, '\0'),
        std::string(1, '\0') + victim.email}) {
    HttpResponse r = login(variant, victim.password);
    expect_problem(r, 422, "NUL variant");
    EXPECT_TRUE(names_field(r, "/email")) << r.body;
    EXPECT_EQ(r.body.find("access_token"), std::string::npos);
  }
  for (const std::string& variant : {" " + victim.email, victim.email + " "}) {
    HttpResponse r = login(variant, victim.password);
    expect_problem(r, 0, "padded variant '" + variant + "'");
    EXPECT_EQ(r.body.find("access_token"), std::string::npos);
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM sessions WHERE user_id = $1", {victim.user_id}),
            sessions_before);
}

TEST_F(BadInput, NulInAnyStringOfAnyBodyIs422NamingTheField) {
  testkit::Account a = signup("Nul Owner");
  auto before = fingerprint();
  std::string nul("a\0b", 3);
  struct Case {
    std::string method, path;
    object body;
    std::string field;
    bool auth;
  };
  std::vector<Case> cases{
      {"PATCH", "/api/tenant", object{{"name", nul}}, "/name", true},
      {"PATCH", "/api/tenant", object{{"slug", "ok-slug"}, {"name", "x" + nul}}, "/name", true},
      {"PATCH", "/api/me", object{{"name", nul}}, "/name", true},
      {"PATCH", "/api/members/" + a.user_id, object{{"role", "owner" + std::string(1, '\0')}},
       "/role", true},
      {"POST", "/api/api-keys", object{{"name", nul}, {"scopes", array{"read"}}}, "/name", true},
      {"POST", "/api/api-keys", object{{"name", "k"}, {"scopes", array{"read", "write" + nul}}},
       "/scopes/1", true},
      {"POST", "/api/auth/refresh", object{{"refresh_token", a.refresh_token + nul}},
       "/refresh_token", false},
      {"POST", "/api/auth/signup",
       object{{"email", "nul-" + core::random_hex(4) + "@example.com"},
              {"password", "correct horse battery staple 42"},
              {"name", "N"},
              {"organization_name", "Evil" + nul}},
       "/organization_name", false},
      {"POST", "/api/auth/login", object{{"email", a.email}, {"password", a.password + nul}},
       "/password", false},
  };
  for (const auto& c : cases) {
    std::vector<std::string> headers;
    if (c.auth) headers.push_back(bearer(a.access_token));
    HttpResponse r = http(c.method, url(c.path), boost::json::serialize(c.body), headers);
    expect_problem(r, 422, c.method + " " + c.path);
    EXPECT_TRUE(names_field(r, c.field)) << c.path << " " << c.field << ": " << r.body;
  }
  // A NUL in a member name is refused too, whatever the member is.
  HttpResponse key =
      http("PATCH", url("/api/tenant"), R"({"na\u0000me":"x"})", {bearer(a.access_token)});
  expect_problem(key, 422, "NUL in a member name");
  expect_same(before, fingerprint(), "NUL bodies");
  HttpResponse tenant = http("GET", url("/api/tenant"), "", {bearer(a.access_token)});
  EXPECT_EQ(str(json_of(tenant), "name"), a.tenant_name);
}

}  // namespace
}  // namespace hsea
