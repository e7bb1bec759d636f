// Black-box tests of tenant isolation and the role/permission matrix (issue 4): the real `hsea`
// binary against a real PostgreSQL, with two or more tenants made through the public sign-up.
//
// There is no invitation flow yet: where a test needs one user in two tenants, or a member with
// a given role, it inserts the memberships row directly as the database owner (add_member).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <future>
#include <latch>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::array;
using boost::json::object;
using testkit::http;
using testkit::HttpResponse;
using testkit::TestDatabase;
using testkit::TestServer;

constexpr const char* kPassword = "correct horse battery staple 42";
constexpr const char* kUserAgent = "hsea-tenancy-test/1.0";

using testkit::bearer;
using testkit::json_of;
using testkit::str;

array data_of(const HttpResponse& r) {
  object body = json_of(r);
  auto it = body.find("data");
  if (it == body.end() || !it->value().is_array()) {
    ADD_FAILURE() << "no data array (status " << r.status << "): " << r.body;
    return {};
  }
  return it->value().as_array();
}

std::string random_suffix() {
  static std::mt19937_64 gen{std::random_device{}()};
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(kHex[gen() % 16]);
  return out;
}

struct Account {
  std::string email;
  std::string user_id;
  std::string tenant_id;  // the tenant made at sign-up
  std::string slug;
  std::string tenant_name;
  std::string token;  // access token, bound to tenant_id
};

std::string tenant_header(const std::string& id) { return "X-Tenant-Id: " + id; }

class Tenancy : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    // Retention far beyond the entries the tests backdate, so the server's own daily pruning
    // never races a test.
    server_ = new TestServer(
        *db_, {{"HSEA_BASE_DOMAIN", "example.test"}, {"HSEA_AUDIT_RETENTION_DAYS", "36500"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }

  static std::string url(const std::string& path) { return server_->url(path); }

  // A new user and its new tenant, through POST /api/auth/signup.
  static Account signup(const std::string& org, const std::vector<std::string>& headers = {}) {
    testkit::Account t = testkit::sign_up(*server_, org, headers);
    return Account{t.email, t.user_id, t.tenant_id, t.slug, t.tenant_name, t.access_token};
  }

  static void add_member(const std::string& tenant_id, const Account& user,
                         const std::string& role) {
    testkit::add_member(*db_, tenant_id, user.user_id, role);
  }

  // A request with a bearer credential (access token or API key) and optional extra headers.
  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& credential, const std::string& body = "",
                           std::vector<std::string> headers = {}) {
    if (!credential.empty()) headers.push_back(bearer(credential));
    return http(method, url(path), body, headers);
  }

  static object create_key(const std::string& credential, const std::string& scopes_json,
                           std::vector<std::string> headers = {}) {
    auto r = call("POST", "/api/api-keys", credential,
                  R"({"name":"key )" + random_suffix() + R"(","scopes":)" + scopes_json + "}",
                  std::move(headers));
    EXPECT_EQ(r.status, 201) << r.body;
    return r.status == 201 ? json_of(r) : object{};
  }

  static std::string scalar(const std::string& statement, const std::vector<std::string>& p) {
    auto rows = testkit::sql(db_->admin_url(), statement, p);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }

  static std::string role_of(const std::string& tenant_id, const std::string& user_id) {
    return scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                  {tenant_id, user_id});
  }

  static array audit(const std::string& credential, const std::string& query = "",
                     std::vector<std::string> headers = {}) {
    auto r = call("GET", "/api/audit-logs" + query, credential, "", std::move(headers));
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? data_of(r) : array{};
  }

  static TestDatabase* db_;
  static TestServer* server_;
};
TestDatabase* Tenancy::db_ = nullptr;
TestServer* Tenancy::server_ = nullptr;

// A refused answer is a problem document that says nothing about the other tenant.
void expect_refused(const HttpResponse& r, int status, const Account& other,
                    const std::vector<std::string>& secrets = {}) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/problem+json") << r.body;
  for (const std::string& s : {other.slug, other.tenant_name, other.email, other.user_id}) {
    if (!s.empty()) {
      EXPECT_EQ(r.body.find(s), std::string::npos) << s << " leaked: " << r.body;
    }
  }
  for (const std::string& s : secrets) {
    if (!s.empty()) {
      EXPECT_EQ(r.body.find(s), std::string::npos) << s << " leaked: " << r.body;
    }
  }
}

bool has_user(const array& members, const std::string& user_id) {
  return std::ranges::any_of(members, [&](const boost::json::value& m) {
    return str(m.as_object(), "user_id") == user_id;
  });
}

std::set<std::string> ids_of(const array& items, std::string_view key = "id") {
  std::set<std::string> out;
  for (const auto& v : items) out.insert(str(v.as_object(), key));
  return out;
}

// ------------------------------------------------------------------------------ isolation

TEST_F(Tenancy, SignupMakesTheUserOwnerOfANewTenant) {
  Account a = signup("Acme");
  auto tenant = call("GET", "/api/tenant", a.token);
  ASSERT_EQ(tenant.status, 200) << tenant.body;
  EXPECT_EQ(str(json_of(tenant), "id"), a.tenant_id);
  EXPECT_EQ(str(json_of(tenant), "slug"), a.slug);
  EXPECT_EQ(str(json_of(tenant), "status"), "active");
  auto members = call("GET", "/api/members", a.token);
  ASSERT_EQ(members.status, 200) << members.body;
  array list = data_of(members);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(str(list[0].as_object(), "user_id"), a.user_id);
  EXPECT_EQ(str(list[0].as_object(), "role"), "owner");
  // The same route under /api/v1.
  EXPECT_EQ(call("GET", "/api/v1/tenant", a.token).status, 200);
}

TEST_F(Tenancy, OtherTenantsHeaderIsRefusedWithoutData) {
  Account a = signup("Alpha");
  Account b = signup("Beta");
  object key = create_key(a.token, R"(["read"])");
  std::string key_id = str(key, "id");
  std::string owner_path = "/api/members/" + a.user_id;
  std::string key_path = "/api/api-keys/" + key_id;
  std::vector<std::string> as_a{tenant_header(a.tenant_id)};

  struct Case {
    std::string method, path, body;
  };
  const std::vector<Case> cases{
      {"GET", "/api/tenant", ""},
      {"PATCH", "/api/tenant", R"({"name":"Taken over"})"},
      {"DELETE", "/api/tenant", ""},
      {"GET", "/api/members", ""},
      {"PATCH", owner_path, R"({"role":"member"})"},
      {"DELETE", owner_path, ""},
      {"GET", "/api/api-keys", ""},
      {"POST", "/api/api-keys", R"({"name":"intruder","scopes":["write"]})"},
      {"GET", key_path, ""},
      {"DELETE", key_path, ""},
      {"POST", key_path + "/rotate", ""},
      {"GET", "/api/audit-logs", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.method + " " + c.path);
    expect_refused(call(c.method, c.path, b.token, c.body, as_a), 403, a,
                   {key_id, str(key, "prefix")});
  }

  // Nothing changed in A.
  auto tenant = call("GET", "/api/tenant", a.token);
  ASSERT_EQ(tenant.status, 200);
  EXPECT_EQ(str(json_of(tenant), "name"), a.tenant_name);
  EXPECT_EQ(str(json_of(tenant), "status"), "active");
  EXPECT_EQ(role_of(a.tenant_id, a.user_id), "owner");
  EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE tenant_id = $1", {a.tenant_id}), "1");
  EXPECT_EQ(scalar("SELECT revoked_at IS NULL AND expires_at IS NULL FROM api_keys WHERE id = $1",
                   {key_id}),
            "t");
  EXPECT_EQ(call("GET", "/api/tenant", str(key, "key")).status, 200);
  // B's token did not become a member of A, and A's audit log holds only A's own doings.
  EXPECT_EQ(role_of(a.tenant_id, b.user_id), "");
  for (const auto& e : audit(a.token)) {
    EXPECT_EQ(str(e.as_object().at("actor").as_object(), "id").find(b.user_id), std::string::npos);
  }
}

TEST_F(Tenancy, OtherTenantsObjectsAreNotFoundAndUnchanged) {
  Account a = signup("Alpha");
  Account b = signup("Beta");
  object a_key = create_key(a.token, R"(["read"])");
  object b_key = create_key(b.token, R"(["write"])");
  std::string a_key_id = str(a_key, "id");
  std::string a_owner = "/api/members/" + a.user_id;
  std::string a_key_path = "/api/api-keys/" + a_key_id;

  // B acting in its own tenant, with its token and with its API key, names A's objects.
  for (const std::string& credential : {b.token, str(b_key, "key")}) {
    SCOPED_TRACE(credential == b.token ? "B's token" : "B's API key");
    expect_refused(call("GET", a_key_path, credential), 404, a, {str(a_key, "prefix")});
    if (credential == b.token) {
      expect_refused(call("PATCH", a_owner, credential, R"({"role":"member"})"), 404, a);
      expect_refused(call("DELETE", a_owner, credential), 404, a);
      expect_refused(call("DELETE", a_key_path, credential), 404, a);
      expect_refused(call("POST", a_key_path + "/rotate", credential), 404, a);
    }
    auto members = call("GET", "/api/members", credential);
    ASSERT_EQ(members.status, 200) << members.body;
    EXPECT_FALSE(has_user(data_of(members), a.user_id));
    EXPECT_EQ(members.body.find(a.email), std::string::npos);
    auto keys = call("GET", "/api/api-keys", credential);
    ASSERT_EQ(keys.status, 200) << keys.body;
    EXPECT_EQ(ids_of(data_of(keys)).count(a_key_id), 0u);
    auto tenant = call("GET", "/api/tenant", credential);
    ASSERT_EQ(tenant.status, 200) << tenant.body;
    EXPECT_EQ(str(json_of(tenant), "id"), b.tenant_id);
    // Filters naming A's objects find nothing; a cursor from A's log shows only B's entries.
    EXPECT_TRUE(audit(credential, "?target=" + a_key_id).empty());
    EXPECT_TRUE(audit(credential, "?actor=" + a.user_id).empty());
    array a_log = audit(a.token);
    ASSERT_FALSE(a_log.empty());
    std::set<std::string> a_ids = ids_of(a_log);
    for (const auto& e :
         audit(credential, "?starting_after=ffffffff-ffff-7fff-bfff-ffffffffffff")) {
      EXPECT_EQ(a_ids.count(str(e.as_object(), "id")), 0u);
    }
  }

  // B changes and deletes its own tenant; A is untouched.
  ASSERT_EQ(call("PATCH", "/api/tenant", b.token, R"({"name":"Beta renamed"})").status, 200);
  ASSERT_EQ(call("DELETE", "/api/tenant", b.token).status, 202);
  auto tenant = call("GET", "/api/tenant", a.token);
  ASSERT_EQ(tenant.status, 200);
  EXPECT_EQ(str(json_of(tenant), "name"), a.tenant_name);
  EXPECT_EQ(str(json_of(tenant), "status"), "active");
  EXPECT_TRUE(json_of(tenant).at("deletion_scheduled_at").is_null());
  EXPECT_EQ(role_of(a.tenant_id, a.user_id), "owner");
  auto key = call("GET", a_key_path, a.token);
  ASSERT_EQ(key.status, 200) << key.body;
  EXPECT_TRUE(json_of(key).at("expires_at").is_null());
  EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL",
                   {a.tenant_id}),
            "1");
  EXPECT_EQ(call("GET", "/api/tenant", str(a_key, "key")).status, 200);
}

TEST_F(Tenancy, ApiKeyActsOnlyForItsOwnTenant) {
  Account a = signup("Alpha");
  Account b = signup("Beta");
  object key = create_key(a.token, R"(["read"])");
  std::string secret = str(key, "key");
  EXPECT_EQ(secret.rfind("hsea_", 0), 0u) << secret;

  expect_refused(call("GET", "/api/tenant", secret, "", {tenant_header(b.tenant_id)}), 403, b);
  expect_refused(call("GET", "/api/members", secret, "", {tenant_header(b.tenant_id)}), 403, b);
  // By address, another tenant looks like no tenant at all (404, as for an unknown slug).
  expect_refused(call("GET", "/api/tenant", secret, "", {"Host: " + b.slug + ".example.test"}), 404,
                 b);

  auto own = call("GET", "/api/tenant", secret);
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(str(json_of(own), "id"), a.tenant_id);
  EXPECT_EQ(call("GET", "/api/tenant", secret, "", {tenant_header(a.tenant_id)}).status, 200);
  // Using the key records last_used_at.
  auto listed = call("GET", "/api/api-keys/" + str(key, "id"), a.token);
  ASSERT_EQ(listed.status, 200);
  EXPECT_FALSE(json_of(listed).at("last_used_at").is_null()) << listed.body;
  // The list never shows a secret.
  auto keys = call("GET", "/api/api-keys", a.token);
  EXPECT_EQ(keys.body.find(secret), std::string::npos);
}

TEST_F(Tenancy, SubdomainSelectsTheTenant) {
  Account a = signup("Alpha");
  Account b = signup("Beta");
  auto host = [](const Account& t) { return "Host: " + t.slug + ".example.test"; };

  auto own = call("GET", "/api/tenant", a.token, "", {host(a)});
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(str(json_of(own), "id"), a.tenant_id);
  // With a port and in capitals, as browsers may send it.
  std::string upper = a.slug;
  std::ranges::transform(upper, upper.begin(), [](unsigned char c) { return std::toupper(c); });
  EXPECT_EQ(
      call("GET", "/api/tenant", a.token, "", {"Host: " + upper + ".example.test:8080"}).status,
      200);

  // A non-member cannot tell another tenant's address from one without a tenant: both 404.
  expect_refused(call("GET", "/api/tenant", b.token, "", {host(a)}), 404, a);
  expect_refused(call("GET", "/api/members", b.token, "", {host(a)}), 404, a);
  expect_refused(call("GET", "/api/tenant", a.token, "",
                      {"Host: no-such-" + random_suffix() + ".example.test"}),
                 404, b);

  // A member of both picks either by subdomain (membership inserted as test setup).
  add_member(a.tenant_id, b, "member");
  auto other = call("GET", "/api/tenant", b.token, "", {host(a)});
  ASSERT_EQ(other.status, 200) << other.body;
  EXPECT_EQ(str(json_of(other), "id"), a.tenant_id);
  auto home = call("GET", "/api/tenant", b.token, "", {host(b)});
  ASSERT_EQ(home.status, 200) << home.body;
  EXPECT_EQ(str(json_of(home), "id"), b.tenant_id);
}

// A Host that differs only by case, a trailing dot or a port names the same tenant, and a Host
// under the base domain that names no tenant is refused, never answered for the token's own tenant
// (such a DELETE /api/tenant once suspended the caller's own tenant). To a non-member, a subdomain
// that exists looks the same as one that does not.
TEST_F(Tenancy, HostIsNormalisedAndNeverFallsBackToTheCallersTenant) {
  Account a = signup("Caller");
  Account b = signup("Corg");
  auto upper = [](std::string s) {
    std::ranges::transform(s, s.begin(), [](unsigned char c) { return std::toupper(c); });
    return s;
  };
  auto tenant_id_at = [&](const std::string& host) {
    auto r = call("GET", "/api/tenant", a.token, "", {"Host: " + host});
    EXPECT_EQ(r.status, 200) << host << ": " << r.body;
    return r.status == 200 ? str(json_of(r), "id") : std::string();
  };

  // Another tenant's address, however it is spelled: refused, and never the caller's tenant.
  for (const std::string& host :
       {upper(b.slug) + ".EXAMPLE.TEST", b.slug + ".example.test.", b.slug + ".Example.Test.:8080",
        upper(b.slug) + ".example.test:443"}) {
    SCOPED_TRACE(host);
    expect_refused(call("GET", "/api/tenant", a.token, "", {"Host: " + host}), 404, b);
  }
  expect_refused(
      call("DELETE", "/api/tenant", a.token, "", {"Host: " + upper(b.slug) + ".EXAMPLE.TEST"}), 404,
      b);
  expect_refused(call("DELETE", "/api/tenant", a.token, "", {"Host: " + b.slug + ".example.test."}),
                 404, b);
  EXPECT_EQ(scalar("SELECT status FROM tenants WHERE id = $1", {a.tenant_id}), "active");
  EXPECT_EQ(scalar("SELECT status FROM tenants WHERE id = $1", {b.tenant_id}), "active");

  // Names under the base domain that are no tenant's address: refused too.
  for (const std::string& host :
       {"x." + a.slug + ".example.test", "WWW." + upper(a.slug) + ".EXAMPLE.TEST.",
        "no-such-" + random_suffix() + ".EXAMPLE.test", std::string("bad_slug.example.test"),
        std::string(".example.test")}) {
    SCOPED_TRACE(host);
    expect_refused(call("GET", "/api/tenant", a.token, "", {"Host: " + host}), 404, b);
  }

  // Existing and unknown slugs answer alike to a non-member (401 without a credential, 404 with
  // one), for tokens and API keys.
  std::string unknown = "Host: no-such-" + random_suffix() + ".example.test";
  std::string existing = "Host: " + b.slug + ".example.test";
  auto to_existing = call("GET", "/api/members", a.token, "", {existing});
  auto to_unknown = call("GET", "/api/members", a.token, "", {unknown});
  expect_refused(to_existing, 404, b);
  expect_refused(to_unknown, 404, b);
  EXPECT_EQ(str(json_of(to_existing), "detail"), str(json_of(to_unknown), "detail"));
  EXPECT_EQ(call("GET", "/api/tenant", "", "", {existing}).status, 401);
  EXPECT_EQ(call("GET", "/api/tenant", "", "", {unknown}).status, 401);
  std::string key = str(create_key(a.token, R"(["read"])"), "key");
  expect_refused(call("GET", "/api/tenant", key, "", {existing}), 404, b);
  expect_refused(call("GET", "/api/tenant", key, "", {unknown}), 404, b);

  // A member reaches its own tenant by any spelling of its address.
  for (const std::string& host : {upper(a.slug) + ".EXAMPLE.TEST", a.slug + ".example.test.",
                                  a.slug + ".EXAMPLE.test.:8443"}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(tenant_id_at(host), a.tenant_id);
  }
  // The base domain itself and other hosts (addresses, IPv6 literals) name no tenant: the
  // credential's tenant applies.
  for (const std::string& host :
       {std::string("example.test"), std::string("EXAMPLE.TEST."), std::string("127.0.0.1:8080"),
        std::string("[::1]:8080"), std::string("[::1]")}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(tenant_id_at(host), a.tenant_id);
  }
}

TEST_F(Tenancy, UserInTwoTenantsSeesOnlyTheChosenOne) {
  Account a = signup("Alpha");
  Account u = signup("Umbrella");       // u's own tenant
  add_member(a.tenant_id, u, "admin");  // test setup: no invitations yet
  object a_key = create_key(a.token, R"(["read"])");
  object u_key = create_key(u.token, R"(["read"])");
  std::vector<std::string> in_a{tenant_header(a.tenant_id)};
  std::vector<std::string> in_u{tenant_header(u.tenant_id)};

  auto tenant = call("GET", "/api/tenant", u.token, "", in_a);
  ASSERT_EQ(tenant.status, 200) << tenant.body;
  EXPECT_EQ(str(json_of(tenant), "id"), a.tenant_id);
  EXPECT_EQ(str(json_of(call("GET", "/api/tenant", u.token, "", in_u)), "id"), u.tenant_id);

  array members_a = data_of(call("GET", "/api/members", u.token, "", in_a));
  EXPECT_EQ(members_a.size(), 2u);
  EXPECT_TRUE(has_user(members_a, a.user_id));
  EXPECT_TRUE(has_user(members_a, u.user_id));
  array members_u = data_of(call("GET", "/api/members", u.token, "", in_u));
  ASSERT_EQ(members_u.size(), 1u);
  EXPECT_EQ(str(members_u[0].as_object(), "user_id"), u.user_id);
  EXPECT_EQ(str(members_u[0].as_object(), "role"), "owner");

  std::set<std::string> keys_a = ids_of(data_of(call("GET", "/api/api-keys", u.token, "", in_a)));
  EXPECT_EQ(keys_a, std::set<std::string>{str(a_key, "id")});
  std::set<std::string> keys_u = ids_of(data_of(call("GET", "/api/api-keys", u.token, "", in_u)));
  EXPECT_EQ(keys_u, std::set<std::string>{str(u_key, "id")});

  std::set<std::string> targets_a = ids_of(audit(u.token, "", in_a));
  std::set<std::string> targets_u = ids_of(audit(u.token, "", in_u));
  ASSERT_FALSE(targets_a.empty());
  ASSERT_FALSE(targets_u.empty());
  for (const auto& id : targets_a) EXPECT_EQ(targets_u.count(id), 0u) << id;
  auto by_target = [&](const std::string& target, const std::vector<std::string>& headers) {
    return audit(u.token, "?target=" + target, headers).size();
  };
  EXPECT_EQ(by_target(str(a_key, "id"), in_a), 1u);
  EXPECT_EQ(by_target(str(a_key, "id"), in_u), 0u);
  EXPECT_EQ(by_target(str(u_key, "id"), in_u), 1u);
  EXPECT_EQ(by_target(str(u_key, "id"), in_a), 0u);

  // Signing in straight into a tenant; one the user does not belong to is refused.
  object login{{"email", u.email}, {"password", kPassword}, {"tenant_id", a.tenant_id}};
  auto in = http("POST", url("/api/auth/login"), boost::json::serialize(login));
  ASSERT_EQ(in.status, 200) << in.body;
  EXPECT_EQ(str(json_of(in).at("tenant").as_object(), "id"), a.tenant_id);
  auto t = call("GET", "/api/tenant", str(json_of(in), "access_token"));
  EXPECT_EQ(str(json_of(t), "id"), a.tenant_id);
  Account other = signup("Other");
  login["tenant_id"] = other.tenant_id;
  auto refused = http("POST", url("/api/auth/login"), boost::json::serialize(login));
  expect_refused(refused, 403, other);
}

TEST_F(Tenancy, TenantListShowsExactlyTheCallersMemberships) {
  Account a = signup("Alpha");
  Account b = signup("Beta");
  Account c = signup("Gamma");
  add_member(a.tenant_id, c, "billing");  // test setup: no invitations yet

  auto mine = [&](const Account& who) {
    auto r = call("GET", "/api/tenants", who.token);
    EXPECT_EQ(r.status, 200) << r.body;
    std::map<std::string, std::string> out;
    for (const auto& t : data_of(r)) out[str(t.as_object(), "id")] = str(t.as_object(), "role");
    return out;
  };
  EXPECT_EQ(mine(a), (std::map<std::string, std::string>{{a.tenant_id, "owner"}}));
  EXPECT_EQ(mine(b), (std::map<std::string, std::string>{{b.tenant_id, "owner"}}));
  EXPECT_EQ(mine(c),
            (std::map<std::string, std::string>{{a.tenant_id, "billing"}, {c.tenant_id, "owner"}}));
}

// ------------------------------------------------------------------------------ roles

TEST_F(Tenancy, MemberAndBillingRolesReadButCannotManage) {
  Account owner = signup("Owner Co");
  object key = create_key(owner.token, R"(["read"])");
  std::string key_path = "/api/api-keys/" + str(key, "id");
  for (const std::string role : {"member", "billing"}) {
    SCOPED_TRACE(role);
    Account user = signup("Their own");
    add_member(owner.tenant_id, user, role);  // test setup: no invitations yet
    std::vector<std::string> in{tenant_header(owner.tenant_id)};

    auto tenant = call("GET", "/api/tenant", user.token, "", in);
    ASSERT_EQ(tenant.status, 200) << tenant.body;
    EXPECT_EQ(str(json_of(tenant), "id"), owner.tenant_id);
    auto members = call("GET", "/api/members", user.token, "", in);
    ASSERT_EQ(members.status, 200) << members.body;
    EXPECT_TRUE(has_user(data_of(members), owner.user_id));

    struct Case {
      std::string method, path, body;
    };
    const std::vector<Case> forbidden{
        {"PATCH", "/api/tenant", R"({"name":"Renamed by )" + role + R"("})"},
        {"DELETE", "/api/tenant", ""},
        {"PATCH", "/api/members/" + owner.user_id, R"({"role":"member"})"},
        {"DELETE", "/api/members/" + owner.user_id, ""},
        {"PATCH", "/api/members/" + user.user_id, R"({"role":"admin"})"},
        {"GET", "/api/api-keys", ""},
        {"POST", "/api/api-keys", R"({"name":"mine","scopes":["write"]})"},
        {"GET", key_path, ""},
        {"DELETE", key_path, ""},
        {"POST", key_path + "/rotate", ""},
        {"GET", "/api/audit-logs", ""},
    };
    for (const Case& c : forbidden) {
      SCOPED_TRACE(c.method + " " + c.path);
      auto r = call(c.method, c.path, user.token, c.body, in);
      EXPECT_EQ(r.status, 403) << r.body;
      EXPECT_EQ(r.body.find(str(key, "prefix")), std::string::npos);
    }
    // In their own tenant they are owners and may do all of it.
    EXPECT_EQ(call("GET", "/api/audit-logs", user.token).status, 200);

    EXPECT_EQ(role_of(owner.tenant_id, user.user_id), role);
    EXPECT_EQ(role_of(owner.tenant_id, owner.user_id), "owner");
  }
  auto tenant = call("GET", "/api/tenant", owner.token);
  EXPECT_EQ(str(json_of(tenant), "name"), owner.tenant_name);
  EXPECT_EQ(str(json_of(tenant), "status"), "active");
  EXPECT_EQ(scalar("SELECT count(*) FROM api_keys WHERE tenant_id = $1 AND revoked_at IS NULL "
                   "AND expires_at IS NULL",
                   {owner.tenant_id}),
            "1");
}

TEST_F(Tenancy, AdminManagesMembersButNotOwners) {
  Account owner = signup("Owner Co");
  Account admin = signup("Admin's own");
  Account member = signup("Member's own");
  add_member(owner.tenant_id, admin, "admin");    // test setup: no invitations yet
  add_member(owner.tenant_id, member, "member");  // test setup: no invitations yet
  std::vector<std::string> in{tenant_header(owner.tenant_id)};
  auto as_admin = [&](const std::string& method, const std::string& path,
                      const std::string& body = "") {
    return call(method, path, admin.token, body, in);
  };

  auto changed = as_admin("PATCH", "/api/members/" + member.user_id, R"({"role":"billing"})");
  ASSERT_EQ(changed.status, 200) << changed.body;
  EXPECT_EQ(str(json_of(changed), "role"), "billing");
  EXPECT_EQ(role_of(owner.tenant_id, member.user_id), "billing");

  EXPECT_EQ(as_admin("PATCH", "/api/members/" + member.user_id, R"({"role":"owner"})").status, 403);
  EXPECT_EQ(as_admin("PATCH", "/api/members/" + admin.user_id, R"({"role":"owner"})").status, 403);
  EXPECT_EQ(as_admin("PATCH", "/api/members/" + owner.user_id, R"({"role":"member"})").status, 403);
  EXPECT_EQ(as_admin("PATCH", "/api/members/" + owner.user_id, R"({"role":"admin"})").status, 403);
  EXPECT_EQ(as_admin("DELETE", "/api/members/" + owner.user_id).status, 403);
  EXPECT_EQ(as_admin("DELETE", "/api/tenant").status, 403);
  EXPECT_EQ(role_of(owner.tenant_id, owner.user_id), "owner");
  EXPECT_EQ(role_of(owner.tenant_id, member.user_id), "billing");
  EXPECT_EQ(role_of(owner.tenant_id, admin.user_id), "admin");

  // Bad role names and unknown members.
  EXPECT_EQ(as_admin("PATCH", "/api/members/" + member.user_id, R"({"role":"god"})").status, 422);
  EXPECT_EQ(as_admin("PATCH", "/api/members/not-a-uuid", R"({"role":"member"})").status, 404);
  EXPECT_EQ(as_admin("DELETE", "/api/members/01890000-0000-7000-8000-000000000000").status, 404);

  // What admins may do.
  auto renamed = as_admin("PATCH", "/api/tenant", R"({"name":"Renamed by admin"})");
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(str(json_of(renamed), "name"), "Renamed by admin");
  object key = create_key(admin.token, R"(["read"])", in);
  EXPECT_EQ(call("GET", "/api/tenant", str(key, "key")).status, 200);
  EXPECT_EQ(as_admin("GET", "/api/audit-logs").status, 200);
  auto removed = as_admin("DELETE", "/api/members/" + member.user_id);
  EXPECT_EQ(removed.status, 204) << removed.body;
  EXPECT_EQ(role_of(owner.tenant_id, member.user_id), "");
  // The removed member is now refused.
  EXPECT_EQ(call("GET", "/api/tenant", member.token, "", in).status, 403);
}

TEST_F(Tenancy, TenantAlwaysKeepsAnOwner) {
  Account owner = signup("Solo");
  std::string self = "/api/members/" + owner.user_id;
  auto demote = call("PATCH", self, owner.token, R"({"role":"admin"})");
  EXPECT_EQ(demote.status, 409) << demote.body;
  auto remove = call("DELETE", self, owner.token);
  EXPECT_EQ(remove.status, 409) << remove.body;
  EXPECT_EQ(role_of(owner.tenant_id, owner.user_id), "owner");

  // A second owner, made by the owner; then the first may step down, and the second is last.
  Account second = signup("Second's own");
  add_member(owner.tenant_id, second, "admin");  // test setup: no invitations yet
  auto promoted =
      call("PATCH", "/api/members/" + second.user_id, owner.token, R"({"role":"owner"})");
  ASSERT_EQ(promoted.status, 200) << promoted.body;
  EXPECT_EQ(role_of(owner.tenant_id, second.user_id), "owner");
  EXPECT_EQ(call("PATCH", self, owner.token, R"({"role":"member"})").status, 200);
  EXPECT_EQ(role_of(owner.tenant_id, owner.user_id), "member");
  std::vector<std::string> in{tenant_header(owner.tenant_id)};
  std::string second_path = "/api/members/" + second.user_id;
  EXPECT_EQ(call("PATCH", second_path, second.token, R"({"role":"admin"})", in).status, 409);
  EXPECT_EQ(call("DELETE", second_path, second.token, "", in).status, 409);
  EXPECT_EQ(role_of(owner.tenant_id, second.user_id), "owner");
}

// The last-owner rule under concurrency: two co-owners deleting their accounts at once, or one
// deleting while the other steps down, must not leave a tenant without an owner. Each round makes
// two tenants that A and B both own; exactly one of the two calls may win.
TEST_F(Tenancy, LastOwnerRuleHoldsUnderConcurrentChanges) {
  auto owners = [](const std::string& tenant_id) {
    return std::stoi(scalar(
        "SELECT count(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'", {tenant_id}));
  };
  int losses = 0;
  for (int round = 0; round < 40; ++round) {
    bool step_down = round % 2 == 1;
    SCOPED_TRACE(fmt::format("round {} ({})", round,
                             step_down ? "DELETE /api/me and PATCH role" : "two DELETE /api/me"));
    Account a = signup("Race A");
    Account b = signup("Race B");
    add_member(a.tenant_id, b, "owner");  // test setup: no invitations yet
    add_member(b.tenant_id, a, "owner");
    std::latch start(2);
    auto first = std::async(std::launch::async, [&] {
      start.arrive_and_wait();
      return call("DELETE", "/api/me", a.token);
    });
    auto second = std::async(std::launch::async, [&] {
      start.arrive_and_wait();
      if (step_down) {
        return call("PATCH", "/api/members/" + b.user_id, b.token, R"({"role":"admin"})",
                    {tenant_header(a.tenant_id)});
      }
      return call("DELETE", "/api/me", b.token);
    });
    HttpResponse ra = first.get(), rb = second.get();
    for (const std::string& tenant : {a.tenant_id, b.tenant_id}) {
      int n = owners(tenant);
      EXPECT_GE(n, 1) << "tenant " << tenant << " has no owner; A: " << ra.status << " " << ra.body
                      << "; B: " << rb.status << " " << rb.body;
      losses += n < 1;
    }
    bool a_won = ra.status == 204, b_won = rb.status == 204 || rb.status == 200;
    EXPECT_NE(a_won, b_won) << "A: " << ra.status << " " << ra.body << "; B: " << rb.status << " "
                            << rb.body;
    const HttpResponse& loser = a_won ? rb : ra;
    EXPECT_EQ(loser.status, 409) << loser.body;
    EXPECT_EQ(loser.header("content-type"), "application/problem+json") << loser.body;
  }
  EXPECT_EQ(losses, 0) << "tenants left without an owner";
}

TEST_F(Tenancy, TenantUpdateKeepsSlugsUniqueAndValid) {
  Account a = signup("Renamer");
  Account b = signup("Bystander");
  auto patch = [&](const std::string& body) { return call("PATCH", "/api/tenant", a.token, body); };

  auto taken = patch(R"({"slug":")" + b.slug + R"("})");
  EXPECT_EQ(taken.status, 409) << taken.body;
  // Refusing did not leave the tenant row locked: the next changes go through at once.
  for (int i = 0; i < 4; ++i) {
    auto renamed = patch(R"({"name":"Renamed )" + std::to_string(i) + R"("})");
    ASSERT_EQ(renamed.status, 200) << renamed.body;
  }
  for (const char* bad : {R"({"slug":"Bad_Slug"})", R"({"name":""})", R"({"status":"active"})",
                          R"({})", R"({"slug":"-x"})"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(patch(bad).status, 422);
  }
  std::string fresh = "renamed-" + random_suffix();
  auto moved = patch(R"({"slug":")" + fresh + R"("})");
  ASSERT_EQ(moved.status, 200) << moved.body;
  EXPECT_EQ(str(json_of(moved), "slug"), fresh);
  EXPECT_EQ(patch(R"({"slug":")" + fresh + R"("})").status, 200);  // its own slug again
  auto by_host = call("GET", "/api/tenant", a.token, "", {"Host: " + fresh + ".example.test"});
  EXPECT_EQ(by_host.status, 200) << by_host.body;
  EXPECT_EQ(call("GET", "/api/tenant", a.token, "", {"Host: " + a.slug + ".example.test"}).status,
            404);
  EXPECT_EQ(scalar("SELECT slug || '/' || name FROM tenants WHERE id = $1", {b.tenant_id}),
            b.slug + "/" + b.tenant_name);
}

TEST_F(Tenancy, OwnerDeletionSuspendsTheTenant) {
  Account owner = signup("Doomed");
  Account admin = signup("Admin's own");
  Account member = signup("Member's own");
  add_member(owner.tenant_id, admin, "admin");    // test setup: no invitations yet
  add_member(owner.tenant_id, member, "member");  // test setup: no invitations yet
  std::vector<std::string> in{tenant_header(owner.tenant_id)};
  object key = create_key(owner.token, R"(["read"])");

  EXPECT_EQ(call("DELETE", "/api/tenant", admin.token, "", in).status, 403);
  EXPECT_EQ(call("DELETE", "/api/tenant", str(key, "key")).status, 403);
  EXPECT_EQ(scalar("SELECT status FROM tenants WHERE id = $1", {owner.tenant_id}), "active");

  auto deleted = call("DELETE", "/api/tenant", owner.token);
  ASSERT_EQ(deleted.status, 202) << deleted.body;
  object body = json_of(deleted);
  EXPECT_EQ(str(body, "id"), owner.tenant_id);
  EXPECT_EQ(str(body, "status"), "suspended");
  EXPECT_TRUE(body.at("deletion_scheduled_at").is_string()) << deleted.body;
  EXPECT_EQ(scalar("SELECT deletion_scheduled_at > now() + interval '29 days' FROM tenants "
                   "WHERE id = $1",
                   {owner.tenant_id}),
            "t");

  EXPECT_EQ(call("GET", "/api/tenant", member.token, "", in).status, 403);
  EXPECT_EQ(call("GET", "/api/members", member.token, "", in).status, 403);
  EXPECT_EQ(call("GET", "/api/tenant", admin.token, "", in).status, 403);
  EXPECT_EQ(call("GET", "/api/tenant", str(key, "key")).status, 403);
  auto seen = call("GET", "/api/tenant", owner.token);
  ASSERT_EQ(seen.status, 200) << seen.body;
  EXPECT_EQ(str(json_of(seen), "status"), "suspended");
  // Their own tenants still work.
  EXPECT_EQ(call("GET", "/api/tenant", member.token).status, 200);
  // The owner can still read the audit log, which records the deletion.
  array log = audit(owner.token, "?action=tenant.deletion_scheduled");
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(str(log[0].as_object().at("actor").as_object(), "id"), owner.user_id);
  EXPECT_EQ(str(log[0].as_object().at("target").as_object(), "id"), owner.tenant_id);
}

TEST_F(Tenancy, DeletedTenantIsPurgedAfterItsGracePeriod) {
  Account owner = signup("Purged");
  Account member = signup("Purged member's own");
  add_member(owner.tenant_id, member, "member");  // test setup: no invitations yet
  create_key(owner.token, R"(["read"])");
  Account neighbour = signup("Survivor");
  ASSERT_EQ(call("DELETE", "/api/tenant", owner.token).status, 202);

  std::map<std::string, std::string> env{{"HSEA_ENV", "test"},
                                         {"HSEA_DATABASE_URL", db_->app_url()}};
  // Still inside the grace period: nothing is removed.
  auto early = testkit::run_hsea({"tenants", "purge"}, env);
  EXPECT_EQ(early.exit_code, 0) << early.output;
  EXPECT_EQ(scalar("SELECT count(*) FROM tenants WHERE id = $1", {owner.tenant_id}), "1");

  testkit::sql(db_->admin_url(),
               "UPDATE tenants SET deletion_scheduled_at = now() - interval '1 minute' "
               "WHERE id = $1",
               {owner.tenant_id});
  auto run = testkit::run_hsea({"tenants", "purge"}, env);
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("removed 1 tenants"), std::string::npos) << run.output;
  for (const char* table : {"tenants WHERE id", "memberships WHERE tenant_id",
                            "api_keys WHERE tenant_id", "audit_logs WHERE tenant_id"}) {
    EXPECT_EQ(scalar(std::string("SELECT count(*) FROM ") + table + " = $1", {owner.tenant_id}),
              "0")
        << table;
  }
  // People stay (they may belong elsewhere), and other tenants are untouched.
  EXPECT_EQ(scalar("SELECT count(*) FROM users WHERE id = $1", {member.user_id}), "1");
  EXPECT_EQ(call("GET", "/api/tenant", member.token).status, 200);
  EXPECT_EQ(call("GET", "/api/tenant", neighbour.token).status, 200);
}

// ------------------------------------------------------------------------------ API keys

TEST_F(Tenancy, ApiKeyScopesLimitWhatAKeyMayDo) {
  Account a = signup("Scoped");
  std::string read = str(create_key(a.token, R"(["read"])"), "key");
  object write_key = create_key(a.token, R"(["write"])");
  std::string write = str(write_key, "key");
  std::string tenant_read = str(create_key(a.token, R"(["tenant:read"])"), "key");

  EXPECT_EQ(call("GET", "/api/tenant", read).status, 200);
  EXPECT_EQ(call("GET", "/api/members", read).status, 200);
  EXPECT_EQ(call("GET", "/api/api-keys", read).status, 200);
  EXPECT_EQ(call("GET", "/api/audit-logs", read).status, 200);
  EXPECT_EQ(call("PATCH", "/api/tenant", read, R"({"name":"By read key"})").status, 403);

  EXPECT_EQ(call("GET", "/api/tenant", tenant_read).status, 200);
  EXPECT_EQ(call("GET", "/api/members", tenant_read).status, 403);
  EXPECT_EQ(call("GET", "/api/audit-logs", tenant_read).status, 403);

  auto renamed = call("PATCH", "/api/tenant", write, R"({"name":"By write key"})");
  EXPECT_EQ(renamed.status, 200) << renamed.body;
  // The audit log names the key as the actor.
  array by_key = audit(a.token, "?actor=" + str(write_key, "id"));
  ASSERT_EQ(by_key.size(), 1u);
  EXPECT_EQ(str(by_key[0].as_object(), "action"), "tenant.updated");
  EXPECT_EQ(str(by_key[0].as_object().at("actor").as_object(), "type"), "api_key");
  // Keys never manage members, keys or the tenant's existence, whatever their scopes.
  EXPECT_EQ(call("POST", "/api/api-keys", write, R"({"name":"child","scopes":["write"]})").status,
            403);
  EXPECT_EQ(call("PATCH", "/api/members/" + a.user_id, write, R"({"role":"admin"})").status, 403);
  EXPECT_EQ(call("DELETE", "/api/tenant", write).status, 403);
  EXPECT_EQ(call("GET", "/api/tenants", write).status, 403);
  EXPECT_EQ(scalar("SELECT status FROM tenants WHERE id = $1", {a.tenant_id}), "active");
  EXPECT_EQ(role_of(a.tenant_id, a.user_id), "owner");
}

TEST_F(Tenancy, ApiKeyLifecycle) {
  Account a = signup("Keys");
  object key = create_key(a.token, R"(["read","tenant:read"])");
  std::string id = str(key, "id");
  std::string old_secret = str(key, "key");
  auto rotated = call("POST", "/api/api-keys/" + id + "/rotate", a.token);
  ASSERT_EQ(rotated.status, 201) << rotated.body;
  std::string new_secret = str(json_of(rotated), "key");
  std::string new_id = str(json_of(rotated), "id");
  EXPECT_NE(new_secret, old_secret);
  // Both work during the grace period.
  EXPECT_EQ(call("GET", "/api/tenant", old_secret).status, 200);
  EXPECT_EQ(call("GET", "/api/tenant", new_secret).status, 200);
  EXPECT_EQ(call("DELETE", "/api/api-keys/" + new_id, a.token).status, 204);
  EXPECT_EQ(call("GET", "/api/tenant", new_secret).status, 401);
  EXPECT_EQ(call("GET", "/api/api-keys/" + new_id, a.token).status, 404);
  EXPECT_EQ(call("DELETE", "/api/api-keys/" + new_id, a.token).status, 404);
}

// ------------------------------------------------------------------------------ audit log

const object* find_entry(const array& log, const std::string& action,
                         const std::string& target_id = "") {
  for (const auto& v : log) {
    const object& e = v.as_object();
    if (str(e, "action") == action &&
        (target_id.empty() || str(e.at("target").as_object(), "id") == target_id)) {
      return &e;
    }
  }
  return nullptr;
}

void expect_entry(const array& log, const std::string& action, const std::string& actor_type,
                  const std::string& actor_id, const std::string& target_type,
                  const std::string& target_id, const std::string& request_id) {
  SCOPED_TRACE(action);
  const object* e = find_entry(log, action, target_id);
  ASSERT_NE(e, nullptr) << "no " << action << " entry for " << target_id << " in "
                        << boost::json::serialize(log);
  EXPECT_EQ(str(e->at("actor").as_object(), "type"), actor_type);
  EXPECT_EQ(str(e->at("actor").as_object(), "id"), actor_id);
  EXPECT_EQ(str(e->at("target").as_object(), "type"), target_type);
  EXPECT_EQ(str(*e, "ip"), "127.0.0.1");
  EXPECT_EQ(str(*e, "user_agent"), kUserAgent);
  EXPECT_EQ(str(*e, "request_id"), request_id);
  EXPECT_FALSE(str(*e, "created_at").empty());
  EXPECT_FALSE(str(*e, "id").empty());
}

TEST_F(Tenancy, AuditLogRecordsWhoDidWhatFromWhere) {
  auto with = [](const std::string& request_id) {
    return std::vector<std::string>{"User-Agent: " + std::string(kUserAgent),
                                    "X-Request-Id: " + request_id};
  };
  Account a = signup("Audited", with("req-signup"));
  Account m = signup("Member's own");
  add_member(a.tenant_id, m, "member");  // test setup: no invitations yet

  object login{{"email", a.email}, {"password", kPassword}};
  EXPECT_EQ(
      http("POST", url("/api/auth/login"), boost::json::serialize(login), with("req-login")).status,
      200);
  object wrong{{"email", a.email}, {"password", "not the password at all"}};
  EXPECT_EQ(
      http("POST", url("/api/auth/login"), boost::json::serialize(wrong), with("req-fail")).status,
      401);
  EXPECT_EQ(
      call("PATCH", "/api/members/" + m.user_id, a.token, R"({"role":"billing"})", with("req-role"))
          .status,
      200);
  EXPECT_EQ(call("DELETE", "/api/members/" + m.user_id, a.token, "", with("req-remove")).status,
            204);
  object key = create_key(a.token, R"(["read"])", with("req-key-create"));
  std::string key_id = str(key, "id");
  auto rotated =
      call("POST", "/api/api-keys/" + key_id + "/rotate", a.token, "", with("req-key-rotate"));
  ASSERT_EQ(rotated.status, 201) << rotated.body;
  std::string new_key_id = str(json_of(rotated), "id");
  EXPECT_EQ(
      call("DELETE", "/api/api-keys/" + new_key_id, a.token, "", with("req-key-delete")).status,
      204);
  EXPECT_EQ(
      call("PATCH", "/api/tenant", a.token, R"({"name":"Audited renamed"})", with("req-tenant"))
          .status,
      200);

  array log = audit(a.token, "?limit=200");
  const std::string& u = a.user_id;
  expect_entry(log, "user.signed_up", "user", u, "user", u, "req-signup");
  expect_entry(log, "auth.login", "user", u, "session", "", "req-login");
  expect_entry(log, "auth.login_failed", "anonymous", "", "user", u, "req-fail");
  expect_entry(log, "member.role_changed", "user", u, "user", m.user_id, "req-role");
  expect_entry(log, "member.removed", "user", u, "user", m.user_id, "req-remove");
  expect_entry(log, "api_key.created", "user", u, "api_key", key_id, "req-key-create");
  expect_entry(log, "api_key.rotated", "user", u, "api_key", key_id, "req-key-rotate");
  expect_entry(log, "api_key.deleted", "user", u, "api_key", new_key_id, "req-key-delete");
  expect_entry(log, "tenant.updated", "user", u, "tenant", a.tenant_id, "req-tenant");
  if (const object* e = find_entry(log, "member.role_changed", m.user_id)) {
    const object& change = e->at("metadata").as_object();
    EXPECT_EQ(str(change, "from"), "member");
    EXPECT_EQ(str(change, "to"), "billing");
  }
  // Newest first.
  ASSERT_GE(log.size(), 10u);
  EXPECT_EQ(str(log[0].as_object(), "action"), "tenant.updated");
  // The oldest two: the sign-up and the tenant's first (free) subscription, one transaction.
  EXPECT_EQ((std::set<std::string>{str(log[log.size() - 1].as_object(), "action"),
                                   str(log[log.size() - 2].as_object(), "action")}),
            (std::set<std::string>{"user.signed_up", "subscription.created"}));
  // The member's own tenant saw none of this, and no secret is ever logged.
  for (const auto& e : audit(m.token)) {
    EXPECT_NE(str(e.as_object().at("target").as_object(), "id"), key_id);
  }
  std::string all = boost::json::serialize(log);
  EXPECT_EQ(all.find(kPassword), std::string::npos);
  EXPECT_EQ(all.find(str(key, "key")), std::string::npos);
}

TEST_F(Tenancy, AuditLogFiltersAndPages) {
  Account a = signup("Filtered");
  Account m = signup("Member's own");
  add_member(a.tenant_id, m, "admin");  // test setup: no invitations yet
  std::vector<std::string> keys;
  for (int i = 0; i < 3; ++i) keys.push_back(str(create_key(a.token, R"(["read"])"), "id"));
  ASSERT_EQ(call("PATCH", "/api/tenant", a.token, R"({"name":"Filtered renamed"})").status, 200);
  // The admin acts too, in A.
  ASSERT_EQ(call("PATCH", "/api/tenant", m.token, R"({"name":"Filtered by admin"})",
                 {tenant_header(a.tenant_id)})
                .status,
            200);
  // 1 sign-up with its free subscription + 3 keys + 2 tenant updates.
  array all = audit(a.token, "?limit=200");
  ASSERT_EQ(all.size(), 7u) << boost::json::serialize(all);

  // action: exact, or a prefix up to a dot.
  array created = audit(a.token, "?action=api_key.created");
  EXPECT_EQ(created.size(), 3u);
  EXPECT_EQ(audit(a.token, "?action=api_key").size(), 3u);
  EXPECT_EQ(audit(a.token, "?action=api_k").size(), 0u);
  // The filter is text, not a pattern: LIKE wildcards match nothing.
  EXPECT_EQ(audit(a.token, "?action=%25").size(), 0u);
  EXPECT_EQ(audit(a.token, "?action=api%5Fkey").size(), 3u);
  EXPECT_EQ(audit(a.token, "?action=api%25").size(), 0u);
  EXPECT_EQ(audit(a.token, "?action=api_key.%25").size(), 0u);
  EXPECT_EQ(audit(a.token, "?action=tenant.updated").size(), 2u);
  // actor and target.
  array by_admin = audit(a.token, "?actor=" + m.user_id);
  ASSERT_EQ(by_admin.size(), 1u);
  EXPECT_EQ(str(by_admin[0].as_object(), "action"), "tenant.updated");
  EXPECT_EQ(audit(a.token, "?actor=" + a.user_id).size(), 5u);
  array by_target = audit(a.token, "?target=" + keys[1]);
  ASSERT_EQ(by_target.size(), 1u);
  EXPECT_EQ(str(by_target[0].as_object().at("target").as_object(), "id"), keys[1]);
  EXPECT_EQ(audit(a.token, "?action=tenant.updated&actor=" + a.user_id).size(), 1u);

  // Time range: move the sign-up entry into the past (as the owner role) and find it by time.
  testkit::sql(db_->admin_url(),
               "UPDATE audit_logs SET created_at = '2001-02-03T04:05:06Z' "
               "WHERE tenant_id = $1 AND action = 'user.signed_up'",
               {a.tenant_id});
  array old = audit(a.token, "?since=2001-01-01T00:00:00Z&until=2001-12-31T00:00:00Z");
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(str(old[0].as_object(), "action"), "user.signed_up");
  EXPECT_EQ(audit(a.token, "?until=2001-12-31T00:00:00Z").size(), 1u);
  EXPECT_EQ(audit(a.token, "?since=2001-12-31T00:00:00Z").size(),
            6u);  // with the first subscription
  EXPECT_EQ(audit(a.token, "?since=2999-01-01T00:00:00Z").size(), 0u);
  // Cursor pagination: limit=2 walks the whole log, newest first, with has_more.
  std::vector<std::string> walked;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    std::string q = "/api/audit-logs?limit=2" + (cursor.empty() ? "" : "&starting_after=" + cursor);
    auto r = call("GET", q, a.token);
    ASSERT_EQ(r.status, 200) << r.body;
    object body = json_of(r);
    array data = body.at("data").as_array();
    for (const auto& e : data) walked.push_back(str(e.as_object(), "id"));
    bool more = body.at("has_more").as_bool();
    if (!more) {
      EXPECT_LE(data.size(), 2u);
      break;
    }
    ASSERT_EQ(data.size(), 2u);
    cursor = walked.back();
  }
  std::vector<std::string> expected;
  for (const auto& e : all) expected.push_back(str(e.as_object(), "id"));
  EXPECT_EQ(walked, expected);
  auto first = json_of(call("GET", "/api/audit-logs?limit=2", a.token));
  EXPECT_TRUE(first.at("has_more").as_bool());
  auto whole = json_of(call("GET", "/api/audit-logs?limit=7", a.token));
  EXPECT_FALSE(whole.at("has_more").as_bool());
  // Filters and the cursor combine.
  array created_rest = audit(a.token, "?action=api_key.created&limit=2&starting_after=" +
                                          str(created[0].as_object(), "id"));
  EXPECT_EQ(created_rest.size(), 2u);

  // Bad parameters are 422, not 500.
  for (const char* q : {"?limit=0", "?limit=201", "?limit=abc", "?starting_after=nope",
                        "?since=not-a-date", "?until=2001-13-45T00:00:00Z"}) {
    SCOPED_TRACE(q);
    auto r = call("GET", std::string("/api/audit-logs") + q, a.token);
    EXPECT_EQ(r.status, 422) << r.body;
  }
}

// Time bounds are RFC 3339 with any offset, and a created_at value the API returned is a valid
// bound: its '+' arrives percent-encoded (%2B) and must stay a plus sign.
TEST_F(Tenancy, AuditLogTimeBoundsAcceptOffsets) {
  Account a = signup("Offsets");
  array all = audit(a.token);  // the sign-up and its free subscription, at one time
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(audit(a.token, "?since=2001-01-01T00:00:00%2B02:00").size(), 2u);
  EXPECT_EQ(audit(a.token, "?until=2001-01-01T00:00:00%2B02:00").size(), 0u);
  std::string created = str(all[0].as_object(), "created_at");
  std::string encoded;
  for (char c : created) {
    encoded += c == '+' ? std::string("%2B") : c == ' ' ? std::string("%20") : std::string(1, c);
  }
  EXPECT_EQ(audit(a.token, "?since=" + encoded).size(), 2u) << created;
  EXPECT_EQ(audit(a.token, "?until=" + encoded).size(), 0u) << created;
}

TEST_F(Tenancy, ReadsOfPersonalDataAndKeysAreAudited) {
  Account a = signup("Access log");
  object key = create_key(a.token, R"(["read"])");
  ASSERT_EQ(call("GET", "/api/members", a.token).status, 200);
  ASSERT_EQ(call("GET", "/api/members", str(key, "key")).status, 200);
  ASSERT_EQ(call("GET", "/api/api-keys/" + str(key, "id"), a.token).status, 200);
  array members = audit(a.token, "?action=member.read");
  ASSERT_EQ(members.size(), 2u) << boost::json::serialize(members);
  // Newest first: the API key's read, then the owner's.
  const object& by_key = members[0].as_object();
  EXPECT_EQ(str(by_key.at("actor").as_object(), "type"), "api_key");
  EXPECT_EQ(str(by_key.at("actor").as_object(), "id"), str(key, "id"));
  EXPECT_EQ(str(members[1].as_object().at("actor").as_object(), "id"), a.user_id);
  EXPECT_EQ(str(by_key.at("metadata").as_object(), "path"), "/api/members");
  EXPECT_FALSE(str(by_key, "request_id").empty());
  EXPECT_EQ(audit(a.token, "?action=api_key.read").size(), 1u);
  // A refused read is not an access.
  Account b = signup("Access log B");
  ASSERT_EQ(call("GET", "/api/members", b.token, "", {tenant_header(a.tenant_id)}).status, 403);
  EXPECT_EQ(audit(a.token, "?action=member.read").size(), 2u);
}

TEST_F(Tenancy, AuditLogCannotBeChanged) {
  Account a = signup("Append only");
  array log = audit(a.token);
  ASSERT_FALSE(log.empty());
  std::string id = str(log[0].as_object(), "id");
  for (const char* method : {"PATCH", "DELETE", "PUT", "POST"}) {
    SCOPED_TRACE(method);
    auto r = call(method, "/api/audit-logs", a.token, method == std::string("DELETE") ? "" : "{}");
    EXPECT_EQ(r.status, 405) << r.body;
    EXPECT_NE(call(method, "/api/audit-logs/" + id, a.token, "{}").status / 100, 2);
  }
  // The server's own database role may read and add entries, never change or remove them.
  std::string in_tenant = "SET app.tenant_id = '" + a.tenant_id + "'; ";
  for (const std::string statement : {"UPDATE audit_logs SET action = 'tampered'",
                                      "DELETE FROM audit_logs", "TRUNCATE audit_logs"}) {
    SCOPED_TRACE(statement);
    EXPECT_ANY_THROW(testkit::sql(db_->app_url(), in_tenant + statement));
  }
  EXPECT_EQ(testkit::sql(db_->app_url(), in_tenant + "SELECT count(*) FROM audit_logs")[0][0],
            std::to_string(log.size()));
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND action = 'tampered'",
                   {a.tenant_id}),
            "0");
  auto after = audit(a.token);
  EXPECT_EQ(boost::json::serialize(after), boost::json::serialize(log));
}

TEST_F(Tenancy, AuditPruneRemovesOnlyOldEntries) {
  Account a = signup("Retention");
  ASSERT_EQ(call("PATCH", "/api/tenant", a.token, R"({"name":"Retention renamed"})").status, 200);
  Account other = signup("Neighbour");
  std::string other_count =
      scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", {other.tenant_id});
  testkit::sql(db_->admin_url(),
               "UPDATE audit_logs SET created_at = now() - interval '3 days' "
               "WHERE tenant_id = $1 AND action = 'user.signed_up'",
               {a.tenant_id});

  auto run = testkit::run_hsea({"audit", "prune"},
                               {{"HSEA_ENV", "test"},
                                {"HSEA_SECRET_KEY", "test-secret-key-0123456789abcdef0123456789"},
                                {"HSEA_DATABASE_URL", db_->admin_url()},
                                {"HSEA_DATABASE_ADMIN_URL", db_->admin_url()},
                                {"HSEA_AUDIT_RETENTION_DAYS", "1"}});
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_NE(run.output.find("removed"), std::string::npos) << run.output;

  array log = audit(a.token);
  EXPECT_EQ(find_entry(log, "user.signed_up"), nullptr) << boost::json::serialize(log);
  EXPECT_NE(find_entry(log, "tenant.updated"), nullptr) << boost::json::serialize(log);
  EXPECT_EQ(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1", {other.tenant_id}),
            other_count);
}

// ------------------------------------------------------------------------------ database

TEST_F(Tenancy, AppRoleSeesNoTenantRowWithoutATenant) {
  Account a = signup("Rows A");
  Account b = signup("Rows B");
  create_key(a.token, R"(["read"])");
  create_key(b.token, R"(["read"])");
  for (const std::string table :
       {"tenants", "memberships", "api_keys", "audit_logs", "users", "sessions"}) {
    SCOPED_TRACE(table);
    std::string count = "SELECT count(*) FROM " + table;
    EXPECT_NE(scalar(count, {}), "0");  // as the owner: rows exist
    EXPECT_EQ(testkit::sql(db_->app_url(), count)[0][0], "0");
  }
  // With a tenant set, a query without WHERE sees exactly that tenant's rows.
  std::string in_a = "SET app.tenant_id = '" + a.tenant_id + "'; ";
  for (const std::string table : {"memberships", "api_keys", "audit_logs"}) {
    SCOPED_TRACE(table);
    auto rows = testkit::sql(db_->app_url(), in_a + "SELECT DISTINCT tenant_id FROM " + table);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0][0], a.tenant_id);
    EXPECT_EQ(testkit::sql(db_->app_url(), in_a + "SELECT count(*) FROM " + table)[0][0],
              scalar("SELECT count(*) FROM " + table + " WHERE tenant_id = $1", {a.tenant_id}));
  }
  // And cannot write into another tenant.
  EXPECT_ANY_THROW(
      testkit::sql(db_->app_url(), in_a +
                                       "INSERT INTO memberships (tenant_id, user_id, role) "
                                       "VALUES ('" +
                                       b.tenant_id + "', '" + a.user_id + "', 'owner')"));
  EXPECT_ANY_THROW(
      testkit::sql(db_->app_url(), in_a + "UPDATE api_keys SET tenant_id = '" + b.tenant_id + "'"));
  EXPECT_EQ(role_of(b.tenant_id, a.user_id), "");
}

}  // namespace
}  // namespace hsea
