// Black-box tests of CORS with per-tenant origins (HSEA-043) and CSRF tokens that rotate
// (HSEA-045): the real `hsea` binary against a real PostgreSQL, two tenants made through the
// public sign-up, tenants addressed by their subdomain of HSEA_BASE_DOMAIN.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::array;
using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::code_of;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;
using testkit::TestDatabase;
using testkit::TestServer;

std::string host_of(const Account& a) { return "Host: " + a.slug + ".example.test"; }

// "name=value" of a Set-Cookie value.
std::string cookie_pair(const std::string& set_cookie) {
  return set_cookie.substr(0, set_cookie.find(';'));
}
std::string cookie_value(const std::string& set_cookie) {
  std::string pair = cookie_pair(set_cookie);
  return pair.substr(pair.find('=') + 1);
}

bool has_cors_header(const HttpResponse& r) {
  for (const auto& [name, value] : r.headers) {
    if (name.starts_with("access-control-")) return true;
  }
  return false;
}

class CorsCsrf : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    server_ = new TestServer(*db_, {{"HSEA_BASE_DOMAIN", "example.test"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }
  static std::string url(const std::string& path) { return server_->url(path); }

  static HttpResponse patch_origins(const Account& a, const std::string& origins_json,
                                    std::vector<std::string> headers = {}) {
    headers.push_back(bearer(a.access_token));
    return http("PATCH", url("/api/tenant/settings"), R"({"allowed_origins":)" + origins_json + "}",
                headers);
  }
  static array origins_of(const Account& a) {
    HttpResponse r = http("GET", url("/api/tenant/settings"), "", {bearer(a.access_token)});
    EXPECT_EQ(r.status, 200) << r.body;
    object body = json_of(r);
    return body.contains("allowed_origins") ? body.at("allowed_origins").as_array() : array{};
  }
  static HttpResponse preflight(const Account& host, const std::string& origin,
                                const std::string& path = "/api/tenant") {
    return http("OPTIONS", url(path), "",
                {host_of(host), "Origin: " + origin, "Access-Control-Request-Method: PATCH",
                 "Access-Control-Request-Headers: content-type, x-csrf-token"});
  }
  // The tenant's audit entries with this action (newest first).
  static array audit(const Account& a, const std::string& action) {
    HttpResponse r =
        http("GET", url("/api/audit-logs?action=" + action), "", {bearer(a.access_token)});
    EXPECT_EQ(r.status, 200) << r.body;
    object body = json_of(r);
    return body.contains("data") ? body.at("data").as_array() : array{};
  }
  struct CookieSession {
    std::string cookie;  // "Cookie: hsea_session=..."
    std::string csrf;
  };
  static CookieSession cookie_login(const Account& a) {
    HttpResponse r =
        http("POST", url("/api/auth/login"),
             boost::json::serialize(
                 object{{"email", a.email}, {"password", a.password}, {"session", "cookie"}}));
    EXPECT_EQ(r.status, 200) << r.body;
    return {"Cookie: " + cookie_pair(r.cookie("hsea_session")), str(json_of(r), "csrf_token")};
  }
  static std::int64_t metric(const std::string& line_prefix) {
    HttpResponse r = http("GET", url("/metrics"));
    std::smatch m;
    std::regex re(std::regex_replace(line_prefix, std::regex(R"([{}\[\]().*+?^$|\\])"), R"(\$&)") +
                  R"( (\d+))");
    return std::regex_search(r.body, m, re) ? std::stoll(m[1]) : -1;
  }

  static inline TestDatabase* db_ = nullptr;
  static inline TestServer* server_ = nullptr;
};

// ---------------------------------------------------------------------- the settings resource

TEST_F(CorsCsrf, AllowedOriginsAreNormalisedStoredPerTenantAndAudited) {
  Account a = testkit::sign_up(*server_, "cors-a");
  Account b = testkit::sign_up(*server_, "cors-b");
  EXPECT_EQ(origins_of(a), array{});
  HttpResponse r = patch_origins(
      a, R"(["HTTPS://App.Example.COM:443","http://localhost:5173","https://app.example.com"])");
  ASSERT_EQ(r.status, 200) << r.body;
  array expected{"https://app.example.com", "http://localhost:5173"};
  EXPECT_EQ(json_of(r).at("allowed_origins").as_array(), expected);
  EXPECT_EQ(origins_of(a), expected);
  EXPECT_EQ(origins_of(b), array{}) << "B sees nothing of A's settings";

  array entries = audit(a, "tenant.settings_updated");
  ASSERT_EQ(entries.size(), 1u);
  object meta = entries[0].as_object().at("metadata").as_object();
  EXPECT_EQ(meta.at("allowed_origins").as_object().at("to").as_array(), expected);
  EXPECT_EQ(audit(b, "tenant.settings_updated").size(), 0u);

  // B cannot read or change A's settings, by header or by A's address.
  EXPECT_EQ(http("GET", url("/api/tenant/settings"), "",
                 {bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id})
                .status,
            403);
  EXPECT_EQ(patch_origins(b, R"(["https://evil.example.com"])", {host_of(a)}).status, 404);
  EXPECT_EQ(origins_of(a), expected);

  // Owners and admins only: a member of A is refused.
  testkit::add_member(*db_, a.tenant_id, b.user_id, "member");
  HttpResponse member = patch_origins(b, R"([])", {"X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(member.status, 403) << member.body;
  EXPECT_EQ(origins_of(a), expected);
}

TEST_F(CorsCsrf, InvalidOriginsAre422NamingTheEntryAndChangeNothing) {
  Account a = testkit::sign_up(*server_, "cors-invalid");
  ASSERT_EQ(patch_origins(a, R"(["https://ok.example.com"])").status, 200);
  for (std::string bad :
       {"https://app.example.com/", "ftp://app.example.com", "app.example.com",
        "https://*.example.com", "*", "https://app.example.com?x=1", "https://app.example.com#x",
        "https://u:p@app.example.com", "https://app.example.com:0", "https://app.example.com:70000",
        "null", "https://", "https://exa mple.com"}) {
    array list{"https://fine.example.com", boost::json::value(bad)};
    HttpResponse r = patch_origins(a, boost::json::serialize(list));
    EXPECT_EQ(r.status, 422) << bad << ": " << r.body;
    EXPECT_EQ(code_of(r), "validation_failed") << bad;
    object body = json_of(r);
    ASSERT_TRUE(body.contains("errors")) << r.body;
    EXPECT_EQ(str(body.at("errors").as_array()[0].as_object(), "field"), "/allowed_origins/1")
        << bad;
  }
  array many;
  for (int i = 0; i < 51; ++i) many.emplace_back(fmt::format("https://a{}.example.com", i));
  EXPECT_EQ(patch_origins(a, boost::json::serialize(many)).status, 422);
  EXPECT_EQ(patch_origins(a, R"("https://x.example.com")").status, 422);
  EXPECT_EQ(patch_origins(a, R"([1])").status, 422);
  EXPECT_EQ(
      http("PATCH", url("/api/tenant/settings"), R"({"other":true})", {bearer(a.access_token)})
          .status,
      422);
  EXPECT_EQ(origins_of(a), (array{"https://ok.example.com"})) << "a refused PATCH changed it";
  EXPECT_EQ(audit(a, "tenant.settings_updated").size(), 1u);
}

// ---------------------------------------------------------------------------------- CORS

TEST_F(CorsCsrf, PreflightFromAListedOriginIs204AndTheSameOriginIsRefusedOnAnotherTenant) {
  Account a = testkit::sign_up(*server_, "preflight-a");
  Account b = testkit::sign_up(*server_, "preflight-b");
  ASSERT_EQ(patch_origins(a, R"(["https://app-a.example.com"])").status, 200);

  HttpResponse ok = preflight(a, "https://app-a.example.com");
  EXPECT_EQ(ok.status, 204) << ok.body;
  EXPECT_EQ(ok.header("access-control-allow-origin"), "https://app-a.example.com");
  EXPECT_EQ(ok.header("access-control-allow-credentials"), "true");
  std::string methods = ok.header("access-control-allow-methods");
  for (std::string m : {"GET", "PATCH", "DELETE"}) {
    EXPECT_NE(methods.find(m), std::string::npos) << methods;
  }
  std::string headers = ok.header("access-control-allow-headers");
  for (std::string h :
       {"Authorization", "Content-Type", "X-CSRF-Token", "Idempotency-Key", "X-API-Key"}) {
    EXPECT_NE(headers.find(h), std::string::npos) << headers;
  }
  EXPECT_EQ(ok.header("access-control-max-age"), "600");
  EXPECT_EQ(ok.header("vary"), "Origin");
  EXPECT_TRUE(ok.body.empty());

  // A's origin on B's address; an unlisted origin on A's; an address with no tenant.
  Account nobody{.slug = "no-such-tenant-here"};
  for (auto [host, origin] :
       {std::pair{&b, "https://app-a.example.com"}, std::pair{&a, "https://evil.example.com"},
        std::pair{&a, "http://app-a.example.com"},
        std::pair{&nobody, "https://app-a.example.com"}}) {
    HttpResponse r = preflight(*host, origin);
    EXPECT_EQ(r.status, 403) << host->slug << " " << origin << ": " << r.body;
    EXPECT_EQ(code_of(r), "origin_not_allowed");
    EXPECT_FALSE(has_cors_header(r)) << host->slug << " " << origin;
  }

  // Refusals are audited in the tenant whose address was called, and only there.
  array refused = audit(b, "security.cors_refused");
  ASSERT_GE(refused.size(), 1u);
  object meta = refused[0].as_object().at("metadata").as_object();
  EXPECT_EQ(str(meta, "origin"), "https://app-a.example.com");
  EXPECT_TRUE(meta.at("preflight").as_bool());
  for (const auto& e : audit(a, "security.cors_refused")) {
    EXPECT_NE(str(e.as_object().at("metadata").as_object(), "origin"), "https://app-a.example.com");
  }
}

TEST_F(CorsCsrf, ActualRequestsGetCredentialsOnlyForListedOrigins) {
  Account a = testkit::sign_up(*server_, "actual-a");
  Account b = testkit::sign_up(*server_, "actual-b");
  ASSERT_EQ(patch_origins(a, R"(["https://app-a.example.com"])").status, 200);
  auto get = [](const Account& host, const Account& caller, std::vector<std::string> extra) {
    extra.push_back(host_of(host));
    extra.push_back(bearer(caller.access_token));
    return http("GET", url("/api/tenant"), "", extra);
  };
  HttpResponse listed = get(a, a, {"Origin: https://app-a.example.com"});
  EXPECT_EQ(listed.status, 200) << listed.body;
  EXPECT_EQ(listed.header("access-control-allow-origin"), "https://app-a.example.com");
  EXPECT_EQ(listed.header("access-control-allow-credentials"), "true");
  EXPECT_NE(listed.header("access-control-expose-headers").find("X-Request-Id"), std::string::npos);
  EXPECT_EQ(listed.header("vary"), "Origin");

  HttpResponse unlisted = get(a, a, {"Origin: https://evil.example.com"});
  EXPECT_EQ(unlisted.status, 200);
  EXPECT_FALSE(has_cors_header(unlisted)) << "an unlisted origin gets no CORS header";
  array refused = audit(a, "security.cors_refused");
  ASSERT_EQ(refused.size(), 1u) << "credentials withheld are a refusal, audited in A";
  object meta = refused[0].as_object().at("metadata").as_object();
  EXPECT_EQ(str(meta, "origin"), "https://evil.example.com");
  EXPECT_FALSE(meta.at("preflight").as_bool());
  EXPECT_EQ(str(meta, "path"), "/api/tenant");
  HttpResponse other_tenant = get(b, b, {"Origin: https://app-a.example.com"});
  EXPECT_EQ(other_tenant.status, 200);
  EXPECT_FALSE(has_cors_header(other_tenant)) << "A's origin is nothing to B";
  HttpResponse no_origin = get(a, a, {});
  EXPECT_FALSE(has_cors_header(no_origin));
  EXPECT_TRUE(no_origin.header("vary").empty()) << "requests without Origin are untouched";
  // Problems from a listed origin are readable by the page too.
  HttpResponse problem =
      http("GET", url("/api/tenant"), "", {host_of(a), "Origin: https://app-a.example.com"});
  EXPECT_EQ(problem.status, 401);
  EXPECT_EQ(problem.header("access-control-allow-origin"), "https://app-a.example.com");
}

TEST_F(CorsCsrf, AChangedListAppliesAtOnce) {
  Account a = testkit::sign_up(*server_, "cors-change");
  ASSERT_EQ(patch_origins(a, R"(["https://one.example.com"])").status, 200);
  // Warm every thread's cache.
  for (int i = 0; i < 6; ++i) EXPECT_EQ(preflight(a, "https://one.example.com").status, 204);
  ASSERT_EQ(patch_origins(a, R"(["https://two.example.com"])").status, 200);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(preflight(a, "https://one.example.com").status, 403);
    EXPECT_EQ(preflight(a, "https://two.example.com").status, 204);
  }
}

// ---------------------------------------------------------------------------------- CSRF

TEST_F(CorsCsrf, CsrfTokenRotatesOnRefreshAndTheOldOneIsRefused) {
  Account a = testkit::sign_up(*server_, "csrf-rotate");
  CookieSession s = cookie_login(a);
  ASSERT_FALSE(s.csrf.empty());
  std::string rename = R"({"name":"Renamed"})";
  auto patch_me = [&](const std::vector<std::string>& headers) {
    return http("PATCH", url("/api/me"), rename, headers);
  };
  EXPECT_EQ(patch_me({s.cookie, "X-CSRF-Token: " + s.csrf}).status, 200);
  EXPECT_EQ(http("GET", url("/api/me"), "", {s.cookie}).status, 200) << "safe methods need none";

  HttpResponse missing = patch_me({s.cookie});
  EXPECT_EQ(missing.status, 403);
  EXPECT_EQ(code_of(missing), "csrf_failed") << missing.body;

  HttpResponse refreshed =
      http("POST", url("/api/auth/refresh"), "{}", {s.cookie, "X-CSRF-Token: " + s.csrf});
  ASSERT_EQ(refreshed.status, 200) << refreshed.body;
  std::string fresh = str(json_of(refreshed), "csrf_token");
  EXPECT_FALSE(fresh.empty());
  EXPECT_NE(fresh, s.csrf);
  EXPECT_EQ(cookie_value(refreshed.cookie("hsea_csrf")), fresh);
  EXPECT_EQ(refreshed.cookie("hsea_csrf").find("HttpOnly"), std::string::npos);

  HttpResponse old = patch_me({s.cookie, "X-CSRF-Token: " + s.csrf});
  EXPECT_EQ(old.status, 403);
  EXPECT_EQ(code_of(old), "csrf_failed") << old.body;
  EXPECT_EQ(patch_me({s.cookie, "X-CSRF-Token: " + fresh}).status, 200);
  // Refreshing needs the current token too; an old one changes nothing.
  HttpResponse stale =
      http("POST", url("/api/auth/refresh"), "{}", {s.cookie, "X-CSRF-Token: " + s.csrf});
  EXPECT_EQ(stale.status, 403);
  EXPECT_EQ(code_of(stale), "csrf_failed");
  EXPECT_EQ(patch_me({s.cookie, "X-CSRF-Token: " + fresh}).status, 200);
  // Without a cookie or refresh token, refresh is still a 422 naming refresh_token.
  EXPECT_EQ(http("POST", url("/api/auth/refresh"), "{}").status, 422);

  // Signing in again is a new session with its own token: the earlier one does not carry over.
  CookieSession again = cookie_login(a);
  EXPECT_NE(again.csrf, fresh);
  EXPECT_EQ(code_of(patch_me({again.cookie, "X-CSRF-Token: " + fresh})), "csrf_failed");
  EXPECT_EQ(patch_me({again.cookie, "X-CSRF-Token: " + again.csrf}).status, 200);
}

TEST_F(CorsCsrf, BearerTokensAndApiKeysAreExempt) {
  Account a = testkit::sign_up(*server_, "csrf-exempt");
  EXPECT_EQ(http("PATCH", url("/api/me"), R"({"name":"Bearer"})", {bearer(a.access_token)}).status,
            200);
  HttpResponse key =
      http("POST", url("/api/api-keys"),
           R"({"name":"cors","scopes":["tenant:write","tenant:read"]})", {bearer(a.access_token)});
  ASSERT_EQ(key.status, 201) << key.body;
  std::string secret = str(json_of(key), "key");
  HttpResponse by_key =
      http("PATCH", url("/api/tenant/settings"),
           R"({"allowed_origins":["https://key.example.com"]})", {bearer(secret)});
  EXPECT_EQ(by_key.status, 200) << by_key.body;
  // A bearer credential wins over a cookie sent alongside it: no CSRF token needed.
  CookieSession s = cookie_login(a);
  EXPECT_EQ(http("PATCH", url("/api/me"), R"({"name":"Both"})", {s.cookie, bearer(a.access_token)})
                .status,
            200);
}

TEST_F(CorsCsrf, CsrfRefusalsAreCountedAndAuditedWithoutAWritePerRefusal) {
  Account a = testkit::sign_up(*server_, "csrf-flood");
  Account b = testkit::sign_up(*server_, "csrf-flood-b");
  CookieSession s = cookie_login(a);
  std::int64_t before = metric(R"(hsea_security_refusals_total{kind="csrf"})");
  ASSERT_GE(before, 0);
  constexpr int kFlood = 40;
  for (int i = 0; i < kFlood; ++i) {
    HttpResponse r = http("PATCH", url("/api/me"), R"({"name":"x"})",
                          {s.cookie, "X-CSRF-Token: forged-" + std::to_string(i)});
    EXPECT_EQ(r.status, 403);
  }
  EXPECT_EQ(metric(R"(hsea_security_refusals_total{kind="csrf"})"), before + kFlood);
  array entries = audit(a, "security.csrf_refused");
  // One entry per I/O thread and minute at most (the test server runs the default threads).
  EXPECT_GE(entries.size(), 1u);
  EXPECT_LE(entries.size(), 4u) << "every refusal was written";
  object first = entries[0].as_object();
  EXPECT_EQ(str(first.at("actor").as_object(), "id"), a.user_id);
  EXPECT_EQ(str(first.at("target").as_object(), "type"), "session");
  object meta = first.at("metadata").as_object();
  EXPECT_EQ(str(meta, "reason"), "mismatch");
  // The entries account for every refusal: written ones plus those each reports suppressed.
  std::int64_t accounted = 0;
  for (const auto& e : entries) {
    accounted += 1 + e.as_object().at("metadata").as_object().at("suppressed").as_int64();
  }
  EXPECT_LE(accounted, kFlood);
  EXPECT_GE(accounted, 1);
  EXPECT_EQ(audit(b, "security.csrf_refused").size(), 0u) << "nothing lands in another tenant";
}

// A session cookie grants access like an access token does, for HSEA_ACCESS_TOKEN_SECONDS after
// sign-in or its last refresh; then requests get 401, and the refresh (which any age of cookie
// may ask for, with the current CSRF token) renews the cookie and rotates the token.
TEST(SessionAccess, ACookieAndAnAccessTokenExpireAfterTheAccessLifetimeAndARefreshRenewsTheCookie) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_ACCESS_TOKEN_SECONDS", "5"}});
  Account a = testkit::sign_up(server, "access-lifetime");
  HttpResponse in = http("POST", server.url("/api/auth/login"),
                         boost::json::serialize(object{
                             {"email", a.email}, {"password", a.password}, {"session", "cookie"}}));
  ASSERT_EQ(in.status, 200) << in.body;
  const std::string cookie = "Cookie: " + cookie_pair(in.cookie("hsea_session"));
  const std::string csrf = str(json_of(in), "csrf_token");
  EXPECT_EQ(http("GET", server.url("/api/me"), "", {cookie}).status, 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(6500));

  HttpResponse expired = http("GET", server.url("/api/me"), "", {cookie});
  EXPECT_EQ(expired.status, 401) << expired.body;
  EXPECT_EQ(code_of(expired), "unauthorized") << expired.body;
  HttpResponse bearer_expired = http("GET", server.url("/api/me"), "", {bearer(a.access_token)});
  EXPECT_EQ(bearer_expired.status, 401) << "the access token's lifetime is the same setting";

  // Refreshing needs the current CSRF token, whatever the cookie's age.
  HttpResponse forged =
      http("POST", server.url("/api/auth/refresh"), "{}", {cookie, "X-CSRF-Token: not-the-token"});
  EXPECT_EQ(forged.status, 403) << forged.body;
  HttpResponse refreshed =
      http("POST", server.url("/api/auth/refresh"), "{}", {cookie, "X-CSRF-Token: " + csrf});
  ASSERT_EQ(refreshed.status, 200) << refreshed.body;
  const std::string renewed = "Cookie: " + cookie_pair(refreshed.cookie("hsea_session"));
  const std::string fresh = str(json_of(refreshed), "csrf_token");
  ASSERT_NE(renewed, "Cookie: ");
  EXPECT_NE(fresh, csrf);
  EXPECT_EQ(http("GET", server.url("/api/me"), "", {renewed}).status, 200);
  EXPECT_EQ(http("GET", server.url("/api/me"), "", {cookie}).status, 401)
      << "the old cookie stays expired";
  EXPECT_EQ(http("PATCH", server.url("/api/me"), R"({"name":"Renewed"})",
                 {renewed, "X-CSRF-Token: " + fresh})
                .status,
            200);
  EXPECT_EQ(http("PATCH", server.url("/api/me"), R"({"name":"Stale"})",
                 {renewed, "X-CSRF-Token: " + csrf})
                .status,
            403);
  // A forged cookie (its time changed) does not pass its MAC.
  std::string value = cookie_pair(refreshed.cookie("hsea_session"));
  std::size_t last = value.rfind('.'), time_dot = value.rfind('.', last - 1);
  std::string forged_time = value.substr(0, time_dot + 1) + "99999999999" + value.substr(last);
  EXPECT_EQ(http("GET", server.url("/api/me"), "", {"Cookie: " + forged_time}).status, 401);
}

}  // namespace
}  // namespace hsea
