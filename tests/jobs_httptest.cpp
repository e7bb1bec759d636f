// Tenant admins see, retry and cancel their own jobs through the API; no job of one tenant is
// visible to or changeable by another; bad input is a problem that changes nothing.
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
using testkit::sql;
using testkit::str;

class JobsApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    // No worker: queued jobs stay queued while the test looks at them.
    server_ = new testkit::TestServer(*db_, {{"HSEA_WORKER_THREADS", "0"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }

  // A failed job of the tenant, as a worker leaves it after its last attempt.
  static std::string failed_job(const std::string& tenant) {
    return sql(db_->admin_url(),
               "INSERT INTO jobs (tenant_id, kind, payload, status, attempts, max_attempts, "
               "last_error, finished_at) VALUES ($1, 'periodic.audit-retention', "
               "'{\"secret\":\"mailed-token-123\"}', 'failed', 3, 3, 'smtp said no', now()) "
               "RETURNING id",
               {tenant})[0][0];
  }
  static std::string status_of(const std::string& id) {
    return sql(db_->admin_url(), "SELECT status FROM jobs WHERE id = $1", {id})[0][0];
  }
  static testkit::HttpResponse call(const std::string& method, const std::string& path,
                                    const std::string& token) {
    return http(method, server_->url(path), "", {bearer(token)});
  }

  static testkit::TestDatabase* db_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* JobsApi::db_ = nullptr;
testkit::TestServer* JobsApi::server_ = nullptr;

TEST_F(JobsApi, AdminsListRetryAndCancelTheirFailedJobs) {
  Account a = testkit::sign_up(*server_, "Jobs A");
  std::string id = failed_job(a.tenant_id);

  auto list = call("GET", "/api/jobs?status=failed", a.access_token);
  ASSERT_EQ(list.status, 200) << list.body;
  object body = json_of(list);
  ASSERT_EQ(body.at("data").as_array().size(), 1u) << list.body;
  object job = body.at("data").as_array()[0].as_object();
  EXPECT_EQ(str(job, "id"), id);
  EXPECT_EQ(str(job, "status"), "failed");
  EXPECT_EQ(str(job, "last_error"), "smtp said no");
  EXPECT_EQ(job.at("attempts").as_int64(), 3);
  EXPECT_FALSE(body.at("has_more").as_bool());
  EXPECT_EQ(list.body.find("mailed-token-123"), std::string::npos) << "the payload is shown";
  // Sign-up also queues its welcome e-mail (mail.welcome); none of the retried kind is queued.
  EXPECT_EQ(
      json_of(call("GET", "/api/jobs?status=queued&kind=periodic.audit-retention", a.access_token))
          .at("data")
          .as_array()
          .size(),
      0u);

  auto retried = call("POST", "/api/jobs/" + id + "/retry", a.access_token);
  ASSERT_EQ(retried.status, 200) << retried.body;
  EXPECT_EQ(str(json_of(retried), "status"), "queued");
  EXPECT_EQ(json_of(retried).at("attempts").as_int64(), 0);
  EXPECT_EQ(status_of(id), "queued");
  // Queued: a second retry is refused with the reason.
  auto again = call("POST", "/api/jobs/" + id + "/retry", a.access_token);
  EXPECT_EQ(again.status, 409) << again.body;
  EXPECT_NE(again.body.find("it is queued"), std::string::npos) << again.body;

  auto cancelled = call("POST", "/api/jobs/" + id + "/cancel", a.access_token);
  ASSERT_EQ(cancelled.status, 200) << cancelled.body;
  EXPECT_EQ(str(json_of(cancelled), "status"), "cancelled");
  EXPECT_EQ(call("POST", "/api/jobs/" + id + "/cancel", a.access_token).status, 409);
  EXPECT_EQ(str(json_of(call("GET", "/api/jobs/" + id, a.access_token)), "status"), "cancelled");

  // Both changes are in the audit log.
  auto audit = call("GET", "/api/audit-logs?action=job", a.access_token);
  EXPECT_NE(audit.body.find("job.retried"), std::string::npos) << audit.body;
  EXPECT_NE(audit.body.find("job.cancelled"), std::string::npos) << audit.body;
}

TEST_F(JobsApi, AnotherTenantsJobsAreNotFoundAndUnchanged) {
  Account a = testkit::sign_up(*server_, "Jobs Owner");
  Account b = testkit::sign_up(*server_, "Jobs Other");
  std::string id = failed_job(a.tenant_id);
  for (const auto& [method, path] :
       {std::pair{"GET", "/api/jobs/" + id}, std::pair{"POST", "/api/jobs/" + id + "/retry"},
        std::pair{"POST", "/api/jobs/" + id + "/cancel"}}) {
    auto r = call(method, path, b.access_token);
    EXPECT_EQ(r.status, 404) << method << " " << path << ": " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(r.body.find(a.tenant_id), std::string::npos) << r.body;
  }
  auto list = call("GET", "/api/jobs", b.access_token);
  ASSERT_EQ(list.status, 200);
  EXPECT_EQ(list.body.find(id), std::string::npos) << "B lists A's job: " << list.body;
  // Naming A's tenant with B's token gets nothing either.
  auto named = http("GET", server_->url("/api/jobs"), "",
                    {bearer(b.access_token), "X-Tenant-Id: " + a.tenant_id});
  EXPECT_NE(named.status, 200) << named.body;
  EXPECT_EQ(named.body.find(id), std::string::npos) << named.body;
  EXPECT_EQ(status_of(id), "failed");
}

TEST_F(JobsApi, MembersAndReadOnlyKeysCannotChangeJobsAndBadInputIsAProblem) {
  Account a = testkit::sign_up(*server_, "Jobs Roles");
  Account m = testkit::sign_up(*server_, "Jobs Member Home");
  testkit::add_member(*db_, a.tenant_id, m.user_id, "member");
  std::string id = failed_job(a.tenant_id);
  auto as_member = http("GET", server_->url("/api/jobs"), "",
                        {bearer(m.access_token), "X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(as_member.status, 403) << as_member.body;

  auto key = http("POST", server_->url("/api/api-keys"), R"({"name":"ro","scopes":["jobs:read"]})",
                  {bearer(a.access_token), "Content-Type: application/json"});
  ASSERT_EQ(key.status, 201) << key.body;
  std::string secret = str(json_of(key), "key");
  EXPECT_EQ(call("GET", "/api/jobs", secret).status, 200);
  EXPECT_EQ(call("POST", "/api/jobs/" + id + "/retry", secret).status, 403);
  EXPECT_EQ(status_of(id), "failed");

  for (const char* path : {"/api/jobs?status=exploded", "/api/jobs?kind=no.such.kind",
                           "/api/jobs?limit=0", "/api/jobs?starting_after=nope"}) {
    auto r = call("GET", path, a.access_token);
    EXPECT_EQ(r.status, 422) << path << ": " << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json") << path;
  }
  EXPECT_EQ(call("POST", "/api/jobs/not-a-uuid/retry", a.access_token).status, 404);
  EXPECT_EQ(
      call("POST", "/api/jobs/00000000-0000-0000-0000-000000000000/cancel", a.access_token).status,
      404);
  EXPECT_EQ(status_of(id), "failed");
}

TEST_F(JobsApi, ListsPageNewestFirst) {
  Account a = testkit::sign_up(*server_, "Jobs Pages");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(failed_job(a.tenant_id));
  std::vector<std::string> seen;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    // Sign-up also queues its welcome e-mail (mail.welcome): only the failed jobs made here.
    std::string path = "/api/jobs?limit=2&kind=periodic.audit-retention" +
                       (cursor.empty() ? "" : "&starting_after=" + cursor);
    object body = json_of(call("GET", path, a.access_token));
    for (const auto& item : body.at("data").as_array()) seen.push_back(str(item.as_object(), "id"));
    if (!body.at("has_more").as_bool()) break;
    cursor = seen.back();
  }
  std::vector<std::string> expected(ids.rbegin(), ids.rend());
  EXPECT_EQ(seen, expected);
}

// The outbox, seen through GET /api/events: every change leaves one event in its own tenant.
TEST_F(JobsApi, EventsRecordEachCommittedChangeInItsTenantOnly) {
  Account a = testkit::sign_up(*server_, "Events A");
  Account b = testkit::sign_up(*server_, "Events B");
  auto key = http("POST", server_->url("/api/api-keys"), R"({"name":"ci","scopes":["read"]})",
                  {bearer(a.access_token), "Content-Type: application/json"});
  ASSERT_EQ(key.status, 201) << key.body;
  std::string secret = str(json_of(key), "key");
  ASSERT_EQ(http("PATCH", server_->url("/api/tenant"), R"({"name":"Events A renamed"})",
                 {bearer(a.access_token), "Content-Type: application/json"})
                .status,
            200);
  // B's refused change (A's slug) leaves no event.
  auto refused = http("PATCH", server_->url("/api/tenant"), R"({"slug":")" + a.slug + R"("})",
                      {bearer(b.access_token), "Content-Type: application/json"});
  ASSERT_EQ(refused.status, 409) << refused.body;

  auto list = call("GET", "/api/events", a.access_token);
  ASSERT_EQ(list.status, 200) << list.body;
  std::vector<std::string> types, ids;
  object listed = json_of(list);
  for (const auto& e : listed.at("data").as_array()) {
    types.push_back(str(e.as_object(), "type"));
    ids.push_back(str(e.as_object(), "id"));
  }
  // Newest first; sign-up's three events come from one transaction, in any order.
  ASSERT_EQ(types.size(), 5u) << list.body;
  EXPECT_EQ(types[0], "tenant.updated");
  EXPECT_EQ(types[1], "api_key.created");
  EXPECT_EQ(std::set<std::string>(types.begin() + 2, types.end()),
            (std::set<std::string>{"tenant.created", "member.added", "subscription.created"}));
  EXPECT_EQ(list.body.find(secret), std::string::npos) << "an event holds the key's secret";
  ASSERT_EQ(ids.size(), 5u) << list.body;
  object updated = json_of(call("GET", "/api/events/" + ids[0], a.access_token));
  EXPECT_EQ(str(updated.at("data").as_object().at("tenant").as_object(), "name"),
            "Events A renamed");
  EXPECT_EQ(str(updated.at("actor").as_object(), "type"), "user");
  EXPECT_EQ(str(updated.at("actor").as_object(), "id"), a.user_id);

  auto filtered = json_of(call("GET", "/api/events?type=api_key.created", a.access_token));
  EXPECT_EQ(filtered.at("data").as_array().size(), 1u);
  EXPECT_EQ(call("GET", "/api/events?type=no.such", a.access_token).status, 422);

  // B sees its own sign-up only, and none of A's events.
  auto theirs = call("GET", "/api/events", b.access_token);
  for (const std::string& id : ids) {
    EXPECT_EQ(theirs.body.find(id), std::string::npos) << "B lists A's event " << id;
    EXPECT_EQ(call("GET", "/api/events/" + id, b.access_token).status, 404);
  }
  EXPECT_EQ(json_of(theirs).at("data").as_array().size(), 3u) << theirs.body;

  auto types_list = call("GET", "/api/events/types", a.access_token);
  ASSERT_EQ(types_list.status, 200);
  for (const char* t :
       {"tenant.created", "member.added", "member.role_changed", "member.removed", "tenant.updated",
        "tenant.deletion_scheduled", "api_key.created", "api_key.rotated", "api_key.deleted"}) {
    EXPECT_NE(types_list.body.find(std::string("\"") + t + "\""), std::string::npos) << t;
  }
}

}  // namespace
}  // namespace hsea
