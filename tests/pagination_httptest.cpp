// Every list pages with `limit` and `starting_after` and says truthfully whether more follow,
// and a page never holds another tenant's items.
#include <gtest/gtest.h>

#include <set>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::http;
using testkit::json_of;
using testkit::str;

class Pagination : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    server_ = new testkit::TestServer(*db_);
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }

  // Reads every page of `path` with `limit` and returns the ids in order; checks that only
  // the last page says has_more false and that no page is longer than the limit.
  static std::vector<std::string> all_pages(const std::string& path, const std::string& token,
                                            const std::string& id_field, int limit) {
    std::vector<std::string> ids;
    std::string cursor;
    for (int guard = 0; guard < 50; ++guard) {
      std::string url = path + "?limit=" + std::to_string(limit);
      if (!cursor.empty()) url += "&starting_after=" + cursor;
      testkit::HttpResponse r = http("GET", server_->url(url), "", {bearer(token)});
      EXPECT_EQ(r.status, 200) << url << ": " << r.body;
      object body = json_of(r);
      const auto& data = body.at("data").as_array();
      EXPECT_LE(data.size(), static_cast<std::size_t>(limit)) << url;
      for (const auto& item : data) ids.push_back(str(item.as_object(), id_field));
      if (!body.at("has_more").as_bool()) return ids;
      EXPECT_EQ(data.size(), static_cast<std::size_t>(limit)) << "a short page said has_more";
      if (data.empty()) return ids;
      cursor = ids.back();
    }
    ADD_FAILURE() << path << " never ended";
    return ids;
  }

  static testkit::TestDatabase* db_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* Pagination::db_ = nullptr;
testkit::TestServer* Pagination::server_ = nullptr;

TEST_F(Pagination, ApiKeysPageWithinTheirTenant) {
  Account a = testkit::sign_up(*server_, "Pages A");
  Account b = testkit::sign_up(*server_, "Pages B");
  std::set<std::string> created;
  for (int i = 0; i < 5; ++i) {
    auto r = http("POST", server_->url("/api/api-keys"),
                  R"({"name":"k)" + std::to_string(i) + R"(","scopes":["read"]})",
                  {bearer(a.access_token), "Content-Type: application/json"});
    ASSERT_EQ(r.status, 201) << r.body;
    created.insert(str(json_of(r), "id"));
  }
  ASSERT_EQ(http("POST", server_->url("/api/api-keys"), R"({"name":"b","scopes":["read"]})",
                 {bearer(b.access_token), "Content-Type: application/json"})
                .status,
            201);
  std::vector<std::string> ids = all_pages("/api/api-keys", a.access_token, "id", 2);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), created);
  EXPECT_EQ(ids.size(), created.size()) << "an item was repeated across pages";
  // Everything on one page: has_more false.
  auto whole =
      json_of(http("GET", server_->url("/api/api-keys?limit=5"), "", {bearer(a.access_token)}));
  EXPECT_FALSE(whole.at("has_more").as_bool());
  EXPECT_EQ(whole.at("data").as_array().size(), 5u);
  // Tenant B's cursor in tenant A's list leaks nothing: it is only a position.
  EXPECT_EQ(all_pages("/api/api-keys", b.access_token, "id", 1).size(), 1u);
}

TEST_F(Pagination, MembersSessionsAndTenantsPage) {
  Account owner = testkit::sign_up(*server_, "Pages members");
  std::set<std::string> members{owner.user_id};
  for (int i = 0; i < 3; ++i) {
    Account other = testkit::sign_up(*server_, "Pages other " + std::to_string(i));
    testkit::add_member(*db_, owner.tenant_id, other.user_id, "member");
    members.insert(other.user_id);
  }
  std::vector<std::string> seen = all_pages("/api/members", owner.access_token, "user_id", 3);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), members);
  EXPECT_EQ(seen.size(), 4u);

  for (int i = 0; i < 2; ++i) {
    auto r = http("POST", server_->url("/api/auth/login"),
                  R"({"email":")" + owner.email + R"(","password":")" + owner.password + R"("})",
                  {"Content-Type: application/json"});
    ASSERT_EQ(r.status, 200) << r.body;
  }
  EXPECT_EQ(all_pages("/api/me/sessions", owner.access_token, "id", 2).size(), 3u);

  Account guest = testkit::sign_up(*server_, "Pages guest");
  testkit::add_member(*db_, owner.tenant_id, guest.user_id, "member");
  EXPECT_EQ(all_pages("/api/tenants", guest.access_token, "id", 1).size(), 2u);
}

TEST_F(Pagination, InvitationsPageWithinTheirTenant) {
  Account a = testkit::sign_up(*server_, "Pages invitations A");
  Account b = testkit::sign_up(*server_, "Pages invitations B");
  // E-mail verification is its own flow; an inviter needs it (test setup).
  testkit::sql(db_->admin_url(), "UPDATE users SET email_verified = true WHERE id IN ($1, $2)",
               {a.user_id, b.user_id});
  auto invite = [&](const Account& by, const std::string& email) {
    auto r = http("POST", server_->url("/api/invitations"),
                  R"({"email":")" + email + R"(","role":"member"})",
                  {bearer(by.access_token), "Content-Type: application/json"});
    EXPECT_EQ(r.status, 201) << r.body;
    return str(json_of(r), "id");
  };
  std::set<std::string> created;
  for (int i = 0; i < 5; ++i) {
    created.insert(invite(a, "page-" + std::to_string(i) + "-" + a.email));
  }
  invite(b, "page-b-" + b.email);
  std::vector<std::string> ids = all_pages("/api/invitations", a.access_token, "id", 2);
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()), created);
  EXPECT_EQ(ids.size(), created.size()) << "an item was repeated across pages";
  auto whole =
      json_of(http("GET", server_->url("/api/invitations?limit=5"), "", {bearer(a.access_token)}));
  EXPECT_FALSE(whole.at("has_more").as_bool());
  EXPECT_EQ(whole.at("data").as_array().size(), 5u);
  EXPECT_EQ(all_pages("/api/invitations", b.access_token, "id", 1).size(), 1u);
  // The audit log (newest first) pages the same way: every entry once, only the tenant's.
  std::vector<std::string> entries = all_pages("/api/audit-logs", a.access_token, "id", 2);
  EXPECT_EQ(std::set<std::string>(entries.begin(), entries.end()).size(), entries.size());
  auto count = testkit::sql(db_->admin_url(),
                            "SELECT count(*) FROM audit_logs WHERE tenant_id = $1", {a.tenant_id});
  EXPECT_EQ(std::to_string(entries.size()), count[0][0]);
}

TEST_F(Pagination, MalformedLimitsAndCursorsAre422) {
  Account a = testkit::sign_up(*server_, "Pages bad");
  for (std::string query : {"limit=0", "limit=201", "limit=abc", "limit=5x", "starting_after=1",
                            "starting_after=not-a-uuid"}) {
    for (std::string path : {"/api/api-keys", "/api/members", "/api/me/sessions", "/api/tenants",
                             "/api/audit-logs", "/api/invitations"}) {
      auto r = http("GET", server_->url(path + "?" + query), "", {bearer(a.access_token)});
      EXPECT_EQ(r.status, 422) << path << "?" << query << ": " << r.body;
      EXPECT_EQ(r.header("content-type"), "application/problem+json") << path << "?" << query;
    }
  }
}

}  // namespace
}  // namespace hsea
