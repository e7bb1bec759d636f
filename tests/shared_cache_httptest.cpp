// Caches across nodes (HSEA-037), black-box with two `hsea serve` nodes on one database:
// - entitlements through the shared tenant cache (one Redis): node B serves a tenant's
//   entitlements from the entry node A stored (hits per tenant in B's /metrics), a subscription
//   change made through A and a plan's new terms are what B answers as soon as the notification
//   arrives (milliseconds), never an older copy after that, and another tenant is untouched;
// - the per-thread auth caches: a revocation through node A ends node B's cached admission
//   within milliseconds (its notification), not when the entry expires.
#include <gtest/gtest.h>

#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <functional>
#include <regex>
#include <thread>

#include "testkit/stripe_emulator.hpp"
#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::object;
using testkit::Account;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;
using testkit::TestServer;

const std::string kPublic = "http://127.0.0.1:8080";  // TestServer's HSEA_PUBLIC_URL
using testkit::call;

using testkit::eventually;

// The plan's seat limit as GET /api/usage/summary answers it (from the entitlements); -1 when
// the answer has none.
long long seats_limit(const TestServer& s, const Account& a) {
  HttpResponse r = call(s, "GET", "/api/usage/summary", a.access_token);
  EXPECT_EQ(r.status, 200) << r.body;
  if (r.status != 200) return -1;
  object summary = json_of(r);
  for (const auto& m : summary.at("meters").as_array()) {
    const object& meter = m.as_object();
    if (str(meter, "meter") == "seats" && meter.at("limit").is_int64()) {
      return meter.at("limit").as_int64();
    }
  }
  return -1;
}

// How long node `s` took to answer `want` (polling, up to 5 s): a change reaches another node's
// per-thread caches by its notification, milliseconds after the writer's commit.
long long ms_until_seats(const TestServer& s, const Account& a, long long want) {
  auto start = std::chrono::steady_clock::now();
  while (seats_limit(s, a) != want &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start)
      .count();
}

// hsea_tenant_cache_hits_total (or _misses_total) of one tenant in a node's /metrics.
long long cache_count(const TestServer& s, const std::string& tenant, const std::string& what) {
  HttpResponse r = http("GET", s.url("/metrics"));
  EXPECT_EQ(r.status, 200);
  std::smatch m;
  std::regex line("hsea_tenant_cache_" + what + "_total\\{tenant=\"" + tenant + "\"\\} ([0-9]+)");
  return std::regex_search(r.body, m, line) ? std::stoll(m[1]) : 0;
}

TEST(EntitlementCache, NodeBServesTheSharedEntryAndNoOlderCopyAfterAChangeThroughNodeA) {
  std::string redis = testkit::required_env("HSEA_TEST_REDIS_URL");
  testkit::TestDatabase db;
  testkit::StripeEmulator stripe;
  std::map<std::string, std::string> env = stripe.hsea_env();
  env["HSEA_REDIS_URL"] = redis;
  TestServer a_node(db, env);
  TestServer b_node(db, env);
  stripe.set_webhook_url(a_node.url("/api/webhooks/stripe"));
  std::map<std::string, std::string> cli = env;
  cli["HSEA_DATABASE_URL"] = db.app_url();
  cli["HSEA_DATABASE_ADMIN_URL"] = db.admin_url();
  testkit::RunResult sync = testkit::run_hsea({"billing", "sync-plans"}, cli);
  ASSERT_EQ(sync.exit_code, 0) << sync.output;

  // Tenant A on the starter plan (checkout through node A, paid, made active by Stripe's
  // webhooks); tenant B stays on free.
  Account a = testkit::sign_up(a_node, "Cached Co");
  Account b = testkit::sign_up(a_node, "Other Co");
  HttpResponse checkout = call(a_node, "POST", "/api/subscriptions/checkout", a.access_token,
                               R"({"plan_id":"starter","interval":"month","success_url":")" +
                                   kPublic + R"(/done","cancel_url":")" + kPublic + R"(/no"})");
  ASSERT_EQ(checkout.status, 201) << checkout.body;
  stripe.complete_checkout(str(json_of(checkout), "checkout_url"));
  ASSERT_TRUE(stripe.wait_webhooks_idle());
  ASSERT_TRUE(eventually([&] {
    HttpResponse r = call(a_node, "GET", "/api/subscriptions/current", a.access_token);
    return str(json_of(r), "plan_id") == "starter" && str(json_of(r), "status") == "active";
  }));

  // Node A reads first and stores the shared entry; node B's threads then miss their own cache
  // and find A's entry: hits counted for tenant A on B.
  EXPECT_EQ(seats_limit(a_node, a), 10);  // starter
  long long hits_before = cache_count(b_node, a.tenant_id, "hits");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(seats_limit(b_node, a), 10);
  EXPECT_GE(cache_count(b_node, a.tenant_id, "hits"), hits_before + 1);

  // Upgrade through node A; node B answers the new plan as soon as the notification arrives
  // (well under the 60 s its cached copy would otherwise live), and every later read does too:
  // no copy older than the change is refilled from the shared cache.
  HttpResponse up =
      call(a_node, "POST", "/api/subscriptions/upgrade", a.access_token, R"({"plan_id":"pro"})");
  ASSERT_EQ(up.status, 200) << up.body;
  EXPECT_LT(ms_until_seats(b_node, a, 50), 1000);  // pro
  for (int i = 0; i < 6; ++i) EXPECT_EQ(seats_limit(b_node, a), 50);
  EXPECT_EQ(seats_limit(a_node, a), 50);

  // A plan's new terms (the plans API of platform staff, on node A) reach node B's answers as
  // soon as the notification does.
  Account staff = testkit::sign_up(a_node, "Operators");
  testkit::sql(db.admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {staff.user_id});
  HttpResponse terms =
      call(a_node, "PATCH", "/api/admin/plans/pro", staff.access_token,
           R"({"limits":{"api_calls":1000000,"storage_bytes":107374182400,"seats":77,)"
           R"("requests_per_second":100,"burst":500}})");
  ASSERT_EQ(terms.status, 200) << terms.body;
  EXPECT_LT(ms_until_seats(b_node, a, 77), 1000);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(seats_limit(b_node, a), 77);

  // Tenant B: its own plan, its own counts; A's change never reached it.
  long long b_hits = cache_count(b_node, b.tenant_id, "hits");
  long long b_misses = cache_count(b_node, b.tenant_id, "misses");
  for (int i = 0; i < 6; ++i) EXPECT_EQ(seats_limit(b_node, b), 3);  // free
  EXPECT_EQ(seats_limit(a_node, b), 3);
  EXPECT_GE(cache_count(b_node, b.tenant_id, "hits") + cache_count(b_node, b.tenant_id, "misses"),
            b_hits + b_misses + 1);
  // Tenant B's token cannot read tenant A's summary (the tenant comes from the token).
  HttpResponse cross =
      http("GET", b_node.url("/api/usage/summary"), "",
           {"Authorization: Bearer " + b.access_token, "X-Tenant-Id: " + a.tenant_id});
  EXPECT_NE(cross.status, 200) << cross.body;
}

TEST(IdentityAcrossNodes, ARevocationThroughNodeAEndsNodeBsCachedAdmissionInMilliseconds) {
  testkit::TestDatabase db;
  TestServer a_node(db);
  TestServer b_node(db);
  Account a = testkit::sign_up(a_node, "Key Co");
  Account b = testkit::sign_up(a_node, "Other Key Co");
  auto make_key = [&](const Account& who) {
    HttpResponse r = call(a_node, "POST", "/api/api-keys", who.access_token,
                          R"({"name":"deploy","scopes":["read"]})");
    EXPECT_EQ(r.status, 201) << r.body;
    return json_of(r);
  };
  object key_a = make_key(a), key_b = make_key(b);
  std::string secret_a = str(key_a, "key"), secret_b = str(key_b, "key");
  // Node B admits both keys and remembers them (both threads, several connections).
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(call(b_node, "GET", "/api/tenant", secret_a).status, 200);
    ASSERT_EQ(call(b_node, "GET", "/api/tenant", secret_b).status, 200);
  }
  // Tenant B cannot delete tenant A's key.
  EXPECT_EQ(call(a_node, "DELETE", "/api/api-keys/" + str(key_a, "id"), b.access_token).status,
            404);
  EXPECT_EQ(call(b_node, "GET", "/api/tenant", secret_a).status, 200);

  auto revoked = std::chrono::steady_clock::now();
  ASSERT_EQ(call(a_node, "DELETE", "/api/api-keys/" + str(key_a, "id"), a.access_token).status,
            204);
  // Refused on node B well before its cached entry (5 s) could have expired.
  int status = 0;
  while (std::chrono::steady_clock::now() - revoked < std::chrono::seconds(4)) {
    status = call(b_node, "GET", "/api/tenant", secret_a).status;
    if (status == 401) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - revoked);
  EXPECT_EQ(status, 401);
  EXPECT_LT(took.count(), 1000) << "refused only after " << took.count() << " ms";
  for (int i = 0; i < 6; ++i) EXPECT_EQ(call(b_node, "GET", "/api/tenant", secret_a).status, 401);
  // The other tenant's key is unaffected.
  EXPECT_EQ(call(b_node, "GET", "/api/tenant", secret_b).status, 200);
}

}  // namespace
}  // namespace hsea
