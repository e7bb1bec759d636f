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
using testkit::bearer;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;
using testkit::TestDatabase;
using testkit::TestServer;

constexpr const char* kRetiredKid = "bad-input-retired-key";

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
    // Work a sign-up enqueued (its welcome mail, its events) finishes in the background: wait
    // until no tenant job is due, so only requests can change what follows.
    for (int i = 0; i < 400 && scalar("SELECT count(*) FROM jobs WHERE tenant_id IS NOT NULL AND "
                                      "status IN ('queued', 'running') AND run_at <= now()") != "0";
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    std::map<std::string, std::string> out;
    for (const auto& row : testkit::sql(
             db_->admin_url(),
             "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")) {
      const std::string& table = row[0];
      std::string rows = "t::text";
      if (table == "sessions") rows = "(t.id, t.revoked_at, t.user_agent)::text";
      if (table == "api_keys") rows = "(t.id, t.name, t.scopes, t.expires_at, t.revoked_at)::text";
      // Platform jobs (the scheduler's maintenance) run in the background whatever requests do.
      std::string where = table == "jobs" ? " WHERE t.tenant_id IS NOT NULL" : "";
      // Every authenticated request, refused or not, is an API call (metering writes them in
      // the background, like a key's usage); the rollup's watermark moves on its own, and the
      // storage job measures storage_bytes (usage_gauges) whenever it is due.
      if (table.starts_with("usage_events") || table == "usage_rollups") {
        where = " WHERE t.meter NOT IN ('api_calls', 'storage_bytes')";
      }
      if (table == "usage_rollup_state" || table == "usage_gauges") continue;
      // Sensitive reads and refused attempts are audited by design: the record of a request,
      // not a change it made.
      if (table == "audit_logs") {
        where = " WHERE t.action NOT LIKE '%.read' AND t.action NOT LIKE '%.refused'";
      }
      out[table] = scalar("SELECT count(*) || ':' || md5(coalesce(string_agg(" + rows +
                          ", '|' ORDER BY " + rows + "), '')) FROM " + table + " t" + where);
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

// ------------------------------------------------------ B: 500s for client input (finding 6)

// Counts the HTTP responses in what a raw exchange got back.
int responses_in(const std::string& reply) {
  int n = 0;
  for (std::size_t at = reply.find("HTTP/1."); at != std::string::npos;
       at = reply.find("HTTP/1.", at + 1)) {
    if (at == 0 || reply.compare(at - 2, 2, "\r\n") == 0 || reply[at - 1] == '}') ++n;
  }
  return n;
}

object jwt_payload(const std::string& token) {
  auto first = token.find('.');
  auto second = token.find('.', first + 1);
  auto raw = identity::base64url_decode(token.substr(first + 1, second - first - 1));
  if (!raw) {
    ADD_FAILURE() << "not a JWT: " << token;
    return {};
  }
  return boost::json::parse(*raw).as_object();
}

TEST_F(BadInput, UndecodableOrCutUserAgentsStillSignInAndAreListed) {
  std::string cut = std::string(511, 'a') + "\xc3\xa9" + "tail";  // 512 bytes ends mid-'é'
  std::string euros;
  for (int i = 0; i < 200; ++i) euros += "\xe2\x82\xac";  // 600 bytes of 3-byte characters
  std::string invalid = "bad \xff\xfe agent \xc3";
  // Sign-up also records the agent (session and audit entry).
  object signup_body{{"email", "ua-" + core::random_hex(4) + "@example.com"},
                     {"password", "correct horse battery staple 42"},
                     {"name", "UA"},
                     {"organization_name", "UA Org " + core::random_hex(3)}};
  HttpResponse made = http("POST", url("/api/auth/signup"), boost::json::serialize(signup_body),
                           {"User-Agent: " + invalid});
  ASSERT_EQ(made.status, 201) << made.body;
  std::string email = str(signup_body, "email"), password = str(signup_body, "password");
  std::string owner_token = str(json_of(made), "access_token");

  std::map<std::string, std::string> sid_to_expected;
  sid_to_expected[str(jwt_payload(owner_token), "sid")] =
      "bad \xef\xbf\xbd\xef\xbf\xbd agent \xef\xbf\xbd";
  for (const std::string& agent : {cut, euros, invalid}) {
    HttpResponse r = login(email, password, {"User-Agent: " + agent});
    ASSERT_EQ(r.status, 200) << r.body;
    std::string sid = str(jwt_payload(str(json_of(r), "access_token")), "sid");
    if (agent == cut) sid_to_expected[sid] = std::string(511, 'a');
    if (agent == euros) sid_to_expected[sid] = euros.substr(0, 510);
  }
  HttpResponse list = http("GET", url("/api/me/sessions"), "", {bearer(owner_token)});
  ASSERT_EQ(list.status, 200) << list.body;
  object body = json_of(list);  // strict parse: the response is valid UTF-8
  int found = 0;
  for (const auto& s : body.at("data").as_array()) {
    std::string ua = str(s.as_object(), "user_agent");
    EXPECT_LE(ua.size(), 512u);
    auto it = sid_to_expected.find(str(s.as_object(), "id"));
    if (it != sid_to_expected.end()) {
      ++found;
      EXPECT_EQ(ua, it->second);
    }
  }
  EXPECT_EQ(found, 3) << list.body;
  HttpResponse audit = http("GET", url("/api/audit-logs"), "", {bearer(owner_token)});
  EXPECT_EQ(audit.status, 200) << audit.body;
  json_of(audit);
}

TEST_F(BadInput, AuditLogFiltersThatAreNotTextAreRefused) {
  testkit::Account a = signup("Audit Filters");
  for (const char* name : {"actor", "action", "target", "since", "until"}) {
    for (const char* bad : {"%ff", "%c3", "a%00b", "%ed%a0%80"}) {
      std::string query = std::string("?") + name + "=" + bad;
      HttpResponse r = http("GET", url("/api/audit-logs" + query), "", {bearer(a.access_token)});
      expect_problem(r, 0, query);
      EXPECT_TRUE(names_field(r, name)) << query << ": " << r.body;
    }
  }
  EXPECT_EQ(
      http("GET", url("/api/audit-logs?action=auth&actor=x"), "", {bearer(a.access_token)}).status,
      200);
}

TEST_F(BadInput, WrongTypedFieldsAre422AndChangeNothing) {
  testkit::Account a = signup("Wrong Types");
  auto before = fingerprint();
  struct Case {
    std::string path, body, field;
    bool auth;
  };
  std::vector<Case> cases{
      {"/api/auth/login",
       R"({"email":")" + a.email + R"(","password":")" + a.password + R"(","tenant_id":[1]})",
       "/tenant_id", false},
      {"/api/auth/login",
       R"({"email":")" + a.email + R"(","password":")" + a.password + R"(","tenant_id":{"a":1}})",
       "/tenant_id", false},
      {"/api/auth/login",
       R"({"email":")" + a.email + R"(","password":")" + a.password + R"(","session":[1]})",
       "/session", false},
      {"/api/api-keys", R"({"name":"k","scopes":["read"],"expires_at":{"x":1}})", "/expires_at",
       true},
      {"/api/api-keys", R"({"name":"k","scopes":["read"],"expires_at":[1]})", "/expires_at", true},
      {"/api/api-keys", R"({"name":"k","scopes":["read"],"expires_at":17})", "/expires_at", true},
  };
  for (const auto& c : cases) {
    std::vector<std::string> headers;
    if (c.auth) headers.push_back(bearer(a.access_token));
    HttpResponse r = http("POST", url(c.path), c.body, headers);
    expect_problem(r, 422, c.body);
    EXPECT_TRUE(names_field(r, c.field)) << c.body << ": " << r.body;
  }
  expect_same(before, fingerprint(), "wrong-typed bodies");
}

// Values of every JSON type except the ones `schema` allows.
std::vector<value> wrong_values(const YAML::Node& schema) {
  std::set<std::string> allowed;
  if (schema["type"].IsSequence()) {
    for (const auto& t : schema["type"]) allowed.insert(t.as<std::string>());
  } else if (schema["type"]) {
    allowed.insert(schema["type"].as<std::string>());
  }
  if (allowed.contains("integer")) allowed.insert("number");
  std::vector<value> out;
  auto add = [&](const std::string& type, std::initializer_list<value> vs) {
    if (allowed.contains(type)) return;
    for (const auto& v : vs) out.push_back(v);
  };
  add("string", {value("1"), value("2030-01-01T00:00:00Z"), value("")});
  add("number", {value(42), value(-1.5), value(1e308)});
  add("boolean", {value(true), value(false)});
  add("null", {value(nullptr)});
  add("array", {value(array{}), value(array{"read"}), value(array{1, 2})});
  add("object", {value(object{}), value(object{{"x", 1}}), value(object{{"read", "read"}})});
  if (allowed.contains("integer") && !allowed.contains("number")) out.push_back(value(1.5));
  if (allowed.contains("string")) out.push_back(value(std::string("x\0y", 3)));
  if (allowed.contains("array") && schema["items"]) {
    for (const auto& item : wrong_values(schema["items"])) out.push_back(value(array{item}));
  }
  return out;
}

// A value `schema` accepts.
value valid_value(const YAML::Node& schema, const std::string& name) {
  std::string type =
      schema["type"] && schema["type"].IsScalar() ? schema["type"].as<std::string>() : "string";
  if (schema["enum"]) return value(schema["enum"][0].as<std::string>());
  if (type == "array") return value(array{valid_value(schema["items"], name)});
  if (type == "integer" || type == "number") return value(1);
  if (type == "boolean") return value(true);
  if (type == "object") return value(object{});
  std::string format = schema["format"] ? schema["format"].as<std::string>() : "";
  if (format == "date-time") return value("2099-01-01T00:00:00Z");
  if (format == "uuid") return value(core::uuid_v7());
  if (name == "email") return value("schema-" + core::random_hex(4) + "@example.com");
  if (schema["pattern"]) return value("valid-" + core::random_hex(3));
  return value("valid");
}

TEST_F(BadInput, EveryBodyPropertyOfTheWrongTypeIsA4xxProblem) {
  testkit::Account a = signup("Schema Owner");
  testkit::Account m = signup("Schema Member");
  testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  // Platform staff, so the operator API's bodies (/api/admin/...) are validated too.
  testkit::sql(db_->admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {a.user_id});
  YAML::Node spec = YAML::LoadFile(std::string(HSEA_SOURCE_DIR) + "/openapi/openapi.yaml");
  auto before = fingerprint();
  int routes = 0, requests = 0;
  for (const auto& path : spec["paths"]) {
    std::string route = path.first.as<std::string>();
    std::string concrete = route;
    for (auto [param, v] : {std::pair{"{user_id}", m.user_id}, std::pair{"{id}", a.user_id}}) {
      if (auto at = concrete.find(param); at != std::string::npos) {
        concrete.replace(at, std::string(param).size(), v);
      }
    }
    for (const auto& op : path.second) {
      std::string method = op.first.as<std::string>();
      if (!op.second.IsMap() || !op.second["requestBody"]) continue;
      std::string ref = op.second["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                            .as<std::string>();
      YAML::Node schema = spec["components"]["schemas"][ref.substr(ref.rfind('/') + 1)];
      ASSERT_TRUE(schema.IsMap()) << ref;
      for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      bool secured = !op.second["security"] || op.second["security"].size() > 0;
      std::vector<std::string> headers;
      if (secured) headers.push_back(bearer(a.access_token));
      ++routes;
      object base;
      for (const auto& prop : schema["properties"]) {
        std::string name = prop.first.as<std::string>();
        base[name] = valid_value(prop.second, name);
      }
      auto send = [&](const std::string& body, const std::string& what,
                      std::vector<std::string> extra = {}) {
        ++requests;
        for (const auto& h : headers) extra.push_back(h);
        HttpResponse r = http(method, url(concrete), body, extra);
        expect_problem(r, 0, method + " " + route + " " + what);
        return r;
      };
      for (const auto& prop : schema["properties"]) {
        std::string name = prop.first.as<std::string>();
        for (const auto& wrong : wrong_values(prop.second)) {
          object body = base;
          body[name] = wrong;
          std::string text = boost::json::serialize(body);
          HttpResponse r = send(text, text);
          EXPECT_EQ(r.status, 422) << method << " " << route << " " << text << ": " << r.body;
          EXPECT_TRUE(names_field(r, "/" + name)) << route << " " << text << ": " << r.body;
        }
      }
      // Not an object, not JSON, nested too deep, an unknown member, not UTF-8, not JSON's media
      // type.
      for (const std::string& body :
           std::vector<std::string>{"[]", "\"x\"", "1", "null", "true", "{", "{\"a\":1",
                                    std::string(200, '[') + "]", "{\"unknown_member_x\":1}",
                                    "\xff\xfe", "{\"name\":\"\xff\"}", "{\"name\":\"\\ud800\"}"}) {
        send(body, "body " + body);
      }
      send(boost::json::serialize(base), "text/plain", {"Content-Type: text/plain"});
    }
  }
  EXPECT_GE(routes, 7);
  EXPECT_GT(requests, 100);
  expect_same(before, fingerprint(), "wrong-typed bodies");
  EXPECT_EQ(login(a.email, a.password).status, 200);
}

TEST_F(BadInput, EveryRouteThatTakesABodyDeclaresItsSchema) {
  YAML::Node spec = YAML::LoadFile(std::string(HSEA_SOURCE_DIR) + "/openapi/openapi.yaml");
  for (const auto& path : spec["paths"]) {
    for (const auto& op : path.second) {
      if (!op.second.IsMap() || !op.second["requestBody"]) continue;
      std::string ref =
          op.second["requestBody"]["content"]["application/json"]["schema"]["$ref"].as<std::string>(
              "");
      ASSERT_FALSE(ref.empty()) << path.first.as<std::string>();
      YAML::Node schema = spec["components"]["schemas"][ref.substr(ref.rfind('/') + 1)];
      EXPECT_EQ(schema["type"].as<std::string>(""), "object") << ref;
      EXPECT_TRUE(schema["additionalProperties"] && !schema["additionalProperties"].as<bool>())
          << ref << " allows unknown members";
      for (const auto& prop : schema["properties"]) {
        EXPECT_TRUE(prop.second["type"] || prop.second["enum"])
            << ref << "." << prop.first.as<std::string>() << " has no type";
      }
    }
  }
}

TEST_F(BadInput, LogLinesStayValidJsonWhateverTheClientSent) {
  std::string reply = testkit::raw_exchange(
      server_->port(),
      "GET /x\xff\xfe%ff%00%c3/y HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xc3\r\n"
      "X-Request-Id: \xff\r\nConnection: close\r\n\r\n",
      std::chrono::milliseconds(3000));
  EXPECT_EQ(responses_in(reply), 1) << reply;
  http("GET", url("/%ff%fe/%00"), "", {"User-Agent: \xff\xfe"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // the log flushes every second
  std::istringstream lines(server_->output());
  std::string line;
  int json_lines = 0;
  while (std::getline(lines, line)) {
    if (!line.starts_with("{")) continue;
    ++json_lines;
    boost::system::error_code ec;
    boost::json::parse(line, ec);  // strict: also refuses invalid UTF-8
    EXPECT_FALSE(ec) << "not a valid JSON line: " << line;
  }
  EXPECT_GT(json_lines, 2);
}

// ------------------------------------------------ C: Transfer-Encoding (finding 8)

TEST_F(BadInput, TransferEncodingOtherThanChunkedIsRefusedAndTheConnectionClosed) {
  // What follows the header would be a second request if the server took the body as empty.
  const std::string smuggled = "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
  std::vector<std::string> headers{
      "Transfer-Encoding: chunked, chunked\r\n",
      "Transfer-Encoding: chunked,chunked\r\n",
      "Transfer-Encoding: gzip, chunked\r\n",
      "Transfer-Encoding: chunked, gzip\r\n",
      "Transfer-Encoding: identity\r\n",
      "Transfer-Encoding: gzip\r\n",
      "Transfer-Encoding: xchunked\r\n",
      "Transfer-Encoding: chunked;q=1\r\n",
      "Transfer-Encoding: chunked\r\n chunked\r\n",
      "Transfer-Encoding: gzip\r\n\t,chunked\r\n",
      "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
      "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
      "Transfer-Encoding: gzip\r\nContent-Length: 38\r\n",
  };
  for (const auto& te : headers) {
    std::string request =
        "POST /api/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + te +
        "\r\n" + smuggled;
    auto started = std::chrono::steady_clock::now();
    std::string reply =
        testkit::raw_exchange(server_->port(), request, std::chrono::milliseconds(4000));
    auto took = std::chrono::steady_clock::now() - started;
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << te << reply;
    EXPECT_EQ(responses_in(reply), 1) << te << reply;
    EXPECT_NE(reply.find("application/problem+json"), std::string::npos) << te;
    EXPECT_LT(took, std::chrono::milliseconds(3000)) << te << ": the connection stayed open";
  }
  // HTTP/1.0 has no chunked coding.
  std::string old = testkit::raw_exchange(
      server_->port(),
      "POST /api/auth/refresh HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled);
  EXPECT_EQ(old.rfind("HTTP/1.1 400", 0), 0u) << old;
  EXPECT_EQ(responses_in(old), 1) << old;

  // Exactly "chunked", in any case, is decoded: one answer per request on a kept connection.
  std::string body = R"({"refresh_token":"nope"})";
  char size[8];
  std::snprintf(size, sizeof size, "%zx", body.size());
  for (const char* te : {"chunked", "Chunked", "CHUNKED"}) {
    std::string chunked = std::string("POST /api/auth/refresh HTTP/1.1\r\nHost: x\r\n") +
                          "Content-Type: application/json\r\nTransfer-Encoding: " + te +
                          "\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n\r\n" +
                          "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    std::string reply = testkit::raw_exchange(server_->port(), chunked);
    EXPECT_EQ(reply.rfind("HTTP/1.1 401", 0), 0u) << reply;
    EXPECT_EQ(responses_in(reply), 2) << reply;
    EXPECT_NE(reply.find("HTTP/1.1 200"), std::string::npos) << reply;
  }
}

// ------------------------------------------------ D: request parsing details (finding 10)

TEST_F(BadInput, ContentTypeMustBeJsonExactly) {
  testkit::Account a = signup("Content Types");
  auto before = fingerprint();
  std::string body = R"({"name":"Renamed Co"})";
  for (const char* type :
       {"application/jsonx", "application/json-seq", "application/jsonp", "application/json5",
        "text/plain", "application/x-www-form-urlencoded", "application/json, text/plain",
        "application/json; charset=latin1", "application/merge-patch+jsonx", "json", ""}) {
    HttpResponse r = http("PATCH", url("/api/tenant"), body,
                          {bearer(a.access_token), std::string("Content-Type: ") + type});
    expect_problem(r, 415, type);
  }
  expect_same(before, fingerprint(), "unsupported media types");
  for (const char* type :
       {"application/json", "APPLICATION/JSON", "application/json; charset=utf-8",
        "application/json;charset=UTF-8", "Application/Json ; charset=\"utf-8\"",
        "application/merge-patch+json"}) {
    HttpResponse r = http("PATCH", url("/api/tenant"), body,
                          {bearer(a.access_token), std::string("Content-Type: ") + type});
    EXPECT_EQ(r.status, 200) << type << ": " << r.body;
  }
}

TEST_F(BadInput, Http11WithoutOneHostIs400) {
  for (const std::string& request :
       {std::string("GET /health/live HTTP/1.1\r\n\r\n"),
        std::string("GET /health/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")}) {
    std::string reply = testkit::raw_exchange(server_->port(), request);
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << request << reply;
    EXPECT_NE(reply.find("application/problem+json"), std::string::npos) << reply;
    EXPECT_EQ(responses_in(reply), 1) << reply;
  }
  // HTTP/1.0 needs no Host.
  std::string old = testkit::raw_exchange(server_->port(), "GET /health/live HTTP/1.0\r\n\r\n");
  EXPECT_EQ(old.rfind("HTTP/1.0 200", 0), 0u) << old;
}

TEST_F(BadInput, RequestTargetMustStartWithASlash) {
  for (const std::string& target :
       std::vector<std::string>{"health/live", "api/tenant", "http://other.test/health/live",
                                "HTTP://127.0.0.1/health/live", "*", "%2Fhealth/live", "health"}) {
    std::string reply =
        testkit::raw_exchange(server_->port(), "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << target << ": " << reply;
    EXPECT_NE(reply.find("application/problem+json"), std::string::npos) << reply;
    EXPECT_EQ(responses_in(reply), 1) << reply;
  }
}

TEST_F(BadInput, EncodedSlashStaysInsideItsSegment) {
  testkit::Account a = signup("Encoded Slash");
  HttpResponse made = http("POST", url("/api/api-keys"), R"({"name":"k","scopes":["read"]})",
                           {bearer(a.access_token)});
  ASSERT_EQ(made.status, 201) << made.body;
  std::string id = str(json_of(made), "id");
  for (const char* path : {"/api/api-keys/%2F", "/api/api-keys/%2f", "/api%2Fapi-keys",
                           "/api/api-keys%2F", "/api/v1%2Fapi-keys", "/api/api-keys/%2F%2F"}) {
    HttpResponse r = http("GET", url(path), "", {bearer(a.access_token)});
    expect_problem(r, 404, path);
    EXPECT_EQ(r.body.find(id), std::string::npos) << path;
  }
  // Path parameters are still decoded: %61 is 'a'.
  std::string encoded = id;
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] >= 'a' && encoded[i] <= 'f') {
      encoded.replace(i, 1, "%" + std::to_string(61 + (encoded[i] - 'a')));
      break;
    }
  }
  ASSERT_NE(encoded, id);
  HttpResponse got = http("GET", url("/api/api-keys/" + encoded), "", {bearer(a.access_token)});
  EXPECT_EQ(got.status, 200) << encoded << ": " << got.body;
  EXPECT_EQ(str(json_of(got), "id"), id);
  EXPECT_EQ(http("GET", url("/api/%61pi-keys"), "", {bearer(a.access_token)}).status, 200);
}

std::string b64url(std::string_view bytes) { return identity::base64url_encode(bytes); }

TEST_F(BadInput, TokenThatIsNotYetValidIsRefused) {
  testkit::Account a = signup("Not Before");
  object payload = jwt_payload(a.access_token);
  std::int64_t now = identity::unix_now();
  object header{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", kRetiredKid}};
  auto mint = [&](const object& p) {
    std::string input =
        b64url(boost::json::serialize(header)) + "." + b64url(boost::json::serialize(p));
    return input + "." + b64url(identity::es256_sign(retired_key_->pkey, input));
  };
  auto me = [&](const std::string& token) {
    return http("GET", url("/api/me"), "", {bearer(token)});
  };
  ASSERT_EQ(me(mint(payload)).status, 200) << "the test's own signing is broken";
  for (std::int64_t nbf : {now + 3600, now + 120}) {
    object p = payload;
    p["nbf"] = nbf;
    expect_problem(me(mint(p)), 401, "nbf in " + std::to_string(nbf - now) + " s");
  }
  for (const value& bad : {value("soon"), value(1.5), value(array{}), value(nullptr)}) {
    object p = payload;
    p["nbf"] = bad;
    expect_problem(me(mint(p)), 401, "nbf " + boost::json::serialize(bad));
  }
  for (std::int64_t nbf : {now - 60, now, now + 10}) {
    object p = payload;
    p["nbf"] = nbf;
    EXPECT_EQ(me(mint(p)).status, 200) << "nbf in " << nbf - now << " s";
  }
}

// ------------------------------------------------ E: reserved slugs (finding 14)

TEST_F(BadInput, ReservedSlugsCannotBeTaken) {
  for (const char* org : {"Admin", "WWW", "api", "HSEA", "Status!", "localhost", "ns1", "Mail"}) {
    object body{{"email", "reserved-" + core::random_hex(4) + "@example.com"},
                {"password", "correct horse battery staple 42"},
                {"name", "R"},
                {"organization_name", org}};
    HttpResponse r = http("POST", url("/api/auth/signup"), boost::json::serialize(body));
    ASSERT_EQ(r.status, 201) << org << ": " << r.body;
    std::string slug = str(json_of(r).at("tenant").as_object(), "slug");
    std::string plain = org;
    std::erase(plain, '!');
    for (char& c : plain) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_NE(slug, plain) << org;
    EXPECT_TRUE(slug.starts_with(plain + "-")) << org << " -> " << slug;
  }
  testkit::Account a = signup("Slug Changer");
  auto before = fingerprint();
  for (const char* slug :
       {"www",       "api",  "admin",   "app",  "mail",      "status", "docs",   "auth", "billing",
        "dashboard", "help", "support", "blog", "static",    "assets", "cdn",    "ftp",  "smtp",
        "imap",      "pop",  "ns1",     "ns2",  "localhost", "root",   "system", "hsea"}) {
    HttpResponse r = http("PATCH", url("/api/tenant"), std::string(R"({"slug":")") + slug + "\"}",
                          {bearer(a.access_token)});
    expect_problem(r, 422, slug);
    EXPECT_TRUE(names_field(r, "/slug")) << r.body;
  }
  expect_same(before, fingerprint(), "reserved slugs");
  HttpResponse ok =
      http("PATCH", url("/api/tenant"), R"({"slug":"www-not-reserved"})", {bearer(a.access_token)});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

// ------------------------------------------ D: every route's parameters and credentials

// One documented operation: its method, path template, whether it needs a credential, and its
// query and header parameters (path-level and operation-level, $refs resolved).
struct Operation {
  std::string method;
  std::string path;
  bool secured = true;
  bool has_body = false;
  std::vector<std::string> query;
  std::vector<std::string> headers;
};

std::vector<Operation> documented_operations() {
  YAML::Node spec = YAML::LoadFile(std::string(HSEA_SOURCE_DIR) + "/openapi/openapi.yaml");
  auto resolve = [&](YAML::Node p) {
    if (!p["$ref"]) return p;
    std::string ref = p["$ref"].as<std::string>();
    return YAML::Node(spec["components"]["parameters"][ref.substr(ref.rfind('/') + 1)]);
  };
  std::vector<Operation> out;
  for (const auto& path : spec["paths"]) {
    for (const auto& op : path.second) {
      std::string method = op.first.as<std::string>();
      if (method == "parameters" || !op.second.IsMap()) continue;
      Operation o;
      for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      o.method = method;
      o.path = path.first.as<std::string>();
      // Absent: the document's own (public); an empty requirement ({}): a credential is optional.
      YAML::Node security = op.second["security"] ? op.second["security"] : spec["security"];
      o.secured = security && security.size() > 0;
      for (const auto& requirement : security) o.secured = o.secured && requirement.size() > 0;
      o.has_body = static_cast<bool>(op.second["requestBody"]);
      for (const YAML::Node& list : {path.second["parameters"], op.second["parameters"]}) {
        if (!list) continue;
        for (const auto& raw : list) {
          YAML::Node p = resolve(raw);
          std::string in = p["in"].as<std::string>(""), name = p["name"].as<std::string>("");
          if (in == "query") o.query.push_back(name);
          if (in == "header") o.headers.push_back(name);
        }
      }
      out.push_back(std::move(o));
    }
  }
  return out;
}

// `path` with each {parameter} replaced by values[parameter], or by `fallback`.
std::string concrete_path(std::string path, const std::map<std::string, std::string>& values,
                          const std::string& fallback) {
  for (std::size_t open; (open = path.find('{')) != std::string::npos;) {
    std::size_t close = path.find('}', open);
    std::string name = path.substr(open + 1, close - open - 1);
    auto it = values.find(name);
    path.replace(open, close - open + 1, it != values.end() ? it->second : fallback);
  }
  return path;
}

// Billing without Stripe configured answers 503 billing_not_configured on purpose (issue 11);
// any other 5xx is the server failing on what the client sent.
bool refused_or_served(const HttpResponse& r, const std::string& what) {
  if (r.status == 503 && r.body.find("billing_not_configured") != std::string::npos) return true;
  EXPECT_LT(r.status, 500) << what << ": " << r.body;
  EXPECT_GT(r.status, 0) << what << ": no answer";
  if (r.status >= 400) expect_problem(r, 0, what);
  return r.status < 500;
}

TEST_F(BadInput, EveryPathQueryAndHeaderParameterOfTheWrongShapeIsRefusedAndChangesNothing) {
  testkit::Account a = signup("Param Owner");
  testkit::Account m = signup("Param Member");
  testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  testkit::sql(db_->admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {a.user_id});
  const std::vector<std::string> wrong_path = {"not-a-uuid",
                                               "0",
                                               "-1",
                                               "%00",
                                               "%27%20OR%20%271%27%3D%271",
                                               std::string(400, 'a'),
                                               "%C3%28",
                                               "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                               "00000000-0000-0000-0000-00000000000g",
                                               "00000000-0000-0000-0000-000000000000",
                                               "%20",
                                               "%7B%7D"};
  const std::vector<std::string> wrong_query = {"",
                                                "-1",
                                                "0",
                                                "abc",
                                                "1e309",
                                                "99999999999999999999999",
                                                "%00",
                                                "%27%20OR%201%3D1--",
                                                std::string(2000, 'x'),
                                                "2026-13-45T25:61:61Z",
                                                "%C3%28",
                                                "null",
                                                "%5B%5D",
                                                "%25",
                                                "a%2Cb"};
  const std::vector<std::string> wrong_header = {"not-a-uuid",
                                                 "00000000-0000-0000-0000-000000000000",
                                                 std::string(300, 'f'), "%00", "\xff\xfe"};
  // Real ids where a route names a tenant, a user or a rule, so the refusals below are about the
  // one parameter made wrong, not about a missing resource.
  const std::map<std::string, std::string> real = {
      {"tenant_id", a.tenant_id}, {"user_id", m.user_id}, {"rule", "api"}, {"name", "welcome"}};
  auto before = fingerprint();
  int requests = 0;
  for (const Operation& op : documented_operations()) {
    std::vector<std::string> auth;
    if (op.secured) auth.push_back(bearer(a.access_token));
    std::string body = op.has_body ? "{}" : "";
    auto send = [&](const std::string& path, const std::vector<std::string>& headers,
                    const std::string& what) {
      ++requests;
      HttpResponse r = http(op.method, url(path), body, headers);
      refused_or_served(r, op.method + " " + op.path + " " + what);
    };
    // Path parameters: every one of them wrong at once.
    if (op.path.find('{') != std::string::npos) {
      for (const std::string& wrong : wrong_path) {
        send(concrete_path(op.path, {}, wrong), auth, "path " + wrong.substr(0, 40));
      }
    }
    if (op.method != "GET") continue;  // reads only: a valid write would change something
    std::string path = concrete_path(op.path, real, core::uuid_v7());
    for (const std::string& name : op.query) {
      for (const std::string& wrong : wrong_query) {
        send(path + "?" + name + "=" + wrong, auth, "?" + name + "=" + wrong.substr(0, 40));
      }
      // Cut at the NUL, the value would be another one: refused, naming the parameter (unless
      // the route refuses before it reads its query: no plan feature, no billing, no resource).
      ++requests;
      HttpResponse cut = http(op.method, url(path + "?" + name + "=a%00b"), body, auth);
      std::string what = op.path + "?" + name + "=a%00b";
      if (cut.status == 422) {
        EXPECT_TRUE(names_field(cut, name)) << what << ": " << cut.body;
      } else {
        EXPECT_TRUE(cut.status == 402 || cut.status == 404 || cut.status == 503)
            << what << ": " << cut.status << " " << cut.body;
      }
    }
    for (const std::string& name : op.headers) {
      for (const std::string& wrong : wrong_header) {
        std::vector<std::string> headers = auth;
        headers.push_back(name + ": " + wrong);
        send(path, headers, name + ": " + wrong.substr(0, 40));
      }
    }
  }
  EXPECT_GT(requests, 500);
  expect_same(before, fingerprint(), "malformed parameters");
  EXPECT_EQ(login(a.email, a.password).status, 200);
}

TEST_F(BadInput, APathParameterCutByANulNamesNothing) {
  testkit::Account a = signup("Nul Staff");
  testkit::sql(db_->admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {a.user_id});
  std::string before = scalar("SELECT name FROM plans WHERE id = 'free'");
  // Sent as text, "free\0x" would reach the database as "free".
  HttpResponse r = http("PATCH", url("/api/admin/plans/free%00x"), R"({"name":"Renamed"})",
                        {bearer(a.access_token)});
  expect_problem(r, 404, "PATCH /api/admin/plans/free%00x");
  EXPECT_EQ(scalar("SELECT name FROM plans WHERE id = 'free'"), before);
}

TEST_F(BadInput, AnotherTenantsIdsInEveryRouteAreNotFoundAndChangeNothing) {
  testkit::Account a = signup("Isolated A");
  testkit::Account m = signup("Isolated A Member");
  testkit::Account b = signup("Prober B");
  testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  testkit::sql(db_->admin_url(), "UPDATE users SET email_verified = true WHERE id = $1",
               {a.user_id});
  // A's resources of every kind that has an id in a route.
  auto created_id = [&](const std::string& path, const std::string& body) {
    HttpResponse r = http("POST", url(path), body, {bearer(a.access_token)});
    EXPECT_EQ(r.status, 201) << path << ": " << r.body;
    return str(json_of(r), "id");
  };
  std::set<std::string> ids = {
      a.tenant_id,
      m.user_id,
      a.user_id,
      created_id("/api/api-keys", R"({"name":"a-key","scopes":["read"]})"),
      created_id("/api/invitations", R"({"email":"invitee-a@example.com","role":"member"})"),
      created_id("/api/webhooks/endpoints", R"({"url":"https://93.184.215.14/hook"})")};
  for (const char* list : {"/api/events", "/api/jobs", "/api/me/sessions"}) {
    HttpResponse r = http("GET", url(list), "", {bearer(a.access_token)});
    ASSERT_EQ(r.status, 200) << list << ": " << r.body;
    object listed = json_of(r);
    for (const auto& row : listed.at("data").as_array()) ids.insert(str(row.as_object(), "id"));
  }
  ids.erase("");
  ASSERT_GE(ids.size(), 8u);
  auto before = fingerprint();
  int requests = 0;
  for (const Operation& op : documented_operations()) {
    if (!op.secured) continue;
    std::string body = op.has_body ? "{}" : "";
    // B, with its own token, names A's ids.
    if (op.path.find('{') != std::string::npos) {
      for (const std::string& id : ids) {
        ++requests;
        std::string path = concrete_path(op.path, {}, id);
        HttpResponse r = http(op.method, url(path), body, {bearer(b.access_token)});
        std::string what = op.method + " " + op.path + " with A's " + id;
        EXPECT_GE(r.status, 400) << what << ": " << r.body;
        refused_or_served(r, what);
      }
    }
    // B, with its own token, asks for A's tenant.
    ++requests;
    HttpResponse r = http(op.method, url(concrete_path(op.path, {}, core::uuid_v7())), body,
                          {bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id});
    std::string what = op.method + " " + op.path + " as B in A's tenant";
    if (op.path.starts_with("/api/me") || op.path == "/api/tenants" ||
        op.path.starts_with("/api/auth/")) {
      refused_or_served(r, what);  // B's own account: the header names no data of A's
      continue;
    }
    EXPECT_GE(r.status, 400) << what << ": " << r.body;
    refused_or_served(r, what);
  }
  EXPECT_GT(requests, 300);
  expect_same(before, fingerprint(), "another tenant's ids");
}

TEST_F(BadInput, EverySecuredRouteRefusesForgedCredentialsWith401) {
  testkit::Account a = signup("Forged Owner");
  // Well-formed but false: a token under a key the server never had, an API key of the right
  // shape that was never issued, a token signed by no one, a session cookie nobody was given.
  object header{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", "never-issued"}};
  object claims{{"sub", a.user_id}, {"tid", a.tenant_id}, {"exp", 4102444800}};
  auto b64 = [](const std::string& s) { return identity::base64url_encode(s); };
  std::string unknown_kid = b64(boost::json::serialize(header)) + "." +
                            b64(boost::json::serialize(claims)) + "." + b64(std::string(64, 's'));
  std::string fake_key = "hsea_" + core::random_hex(6) + "_" + std::string(43, 'A');
  const std::vector<std::pair<std::string, std::string>> forged = {
      {"a token under an unknown key", bearer(unknown_kid)},
      {"an API key never issued", bearer(fake_key)},
      {"a bearer of garbage", bearer("x.y.z")},
      {"an empty bearer", "Authorization: Bearer "},
      {"basic credentials", "Authorization: Basic YWRtaW46YWRtaW4="},
      {"a session cookie nobody was given",
       "Cookie: hsea_session=" + core::random_hex(32) + "; hsea_csrf=" + core::random_hex(16)},
  };
  auto before = fingerprint();
  int routes = 0;
  for (const Operation& op : documented_operations()) {
    if (!op.secured) continue;
    ++routes;
    std::string path = concrete_path(op.path, {{"tenant_id", a.tenant_id}}, core::uuid_v7());
    for (const auto& [what, credential] : forged) {
      std::vector<std::string> headers{credential, "X-Tenant-Id: " + a.tenant_id};
      HttpResponse r = http(op.method, url(path), op.has_body ? "{}" : "", headers);
      std::string label = op.method + " " + op.path + " with " + what;
      // A cookie on a write is refused by the CSRF check before the session is looked at.
      if (what.starts_with("a session cookie") && op.method != "GET" && r.status == 403) {
        expect_problem(r, 403, label);
        continue;
      }
      if (r.status != 401) {
        ADD_FAILURE() << label << ": " << r.status << " " << r.body.substr(0, 200);
        continue;
      }
      expect_problem(r, 401, label);
    }
  }
  EXPECT_GT(routes, 60);
  expect_same(before, fingerprint(), "forged credentials");
}

}  // namespace
}  // namespace hsea
