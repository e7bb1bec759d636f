// Invitations, joining, leaving, more tenants and account deletion (HSEA-017, HSEA-011,
// HSEA-020) through the real `hsea` binary against a real PostgreSQL. The invitation token is
// read where the invitee would find it: in the mail, from the outbox the server wrote it to.
#include <gtest/gtest.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <future>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

using boost::json::array;
using boost::json::object;
using testkit::Account;
using testkit::bearer;
using testkit::http;
using testkit::HttpResponse;
using testkit::json_of;
using testkit::str;

constexpr const char* kPublicUrl = "https://app.hsea.test";
constexpr const char* kPassword = "correct horse battery staple 42";

std::string fresh_email(const std::string& who) {
  static std::mt19937_64 gen{std::random_device{}()};
  return who + "-" + std::to_string(gen() % 1000000000) + "@example.com";
}

class Invitations : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new testkit::TestDatabase();
    server_ = new testkit::TestServer(*db_, {{"HSEA_PUBLIC_URL", kPublicUrl}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }

  static HttpResponse call(const std::string& method, const std::string& path,
                           const std::string& token, const std::string& body = "",
                           std::vector<std::string> headers = {}) {
    if (!token.empty()) headers.push_back(bearer(token));
    if (!body.empty()) headers.push_back("Content-Type: application/json");
    return http(method, server_->url(path), body, headers);
  }

  static std::string scalar(const std::string& statement, const std::vector<std::string>& p) {
    auto rows = testkit::sql(db_->admin_url(), statement, p);
    return rows.empty() || rows[0].empty() ? std::string() : rows[0][0];
  }

  // E-mail verification is its own flow (HSEA-015); here it is test setup.
  static void verify_email(const Account& a) {
    testkit::sql(db_->admin_url(), "UPDATE users SET email_verified = true WHERE id = $1",
                 {a.user_id});
  }

  // A signed-up owner whose address is verified, so it may invite.
  static Account owner(const std::string& org) {
    Account a = testkit::sign_up(*server_, org);
    verify_email(a);
    return a;
  }

  static HttpResponse invite(const Account& by, const std::string& email, const std::string& role,
                             std::vector<std::string> headers = {}) {
    return call("POST", "/api/invitations", by.access_token,
                R"({"email":")" + email + R"(","role":")" + role + R"("})", std::move(headers));
  }

  // The token in the newest invitation mail to `email` (the link the invitee would click).
  static std::string mailed_token(const std::string& email) {
    auto stored = testkit::stored_mail_to(*db_, email, "invitation");
    std::string text = stored.empty() ? "" : stored.back().text;
    std::smatch m;
    static const std::regex kLink(
        R"(https://app\.hsea\.test/accept-invitation\?token=([0-9a-f]+))");
    if (!std::regex_search(text, m, kLink)) {
      ADD_FAILURE() << "no accept link in the mail to " << email << ": " << text;
      return "";
    }
    return m[1];
  }

  static HttpResponse accept_as_new(const std::string& token, const std::string& name = "New One") {
    return call("POST", "/api/invitations/accept", "",
                R"({"token":")" + token + R"(","password":")" + kPassword + R"(","name":")" + name +
                    R"("})");
  }

  static HttpResponse accept_as(const std::string& access_token, const std::string& token) {
    return call("POST", "/api/invitations/accept", access_token, R"({"token":")" + token + R"("})");
  }

  static int members(const std::string& tenant_id) {
    return std::stoi(scalar("SELECT count(*) FROM memberships WHERE tenant_id = $1", {tenant_id}));
  }

  static std::string role_of(const std::string& tenant_id, const std::string& user_id) {
    return scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2",
                  {tenant_id, user_id});
  }

  static std::set<std::string> audit_actions(const std::string& tenant_id) {
    std::set<std::string> out;
    for (auto& row : testkit::sql(
             db_->admin_url(), "SELECT action FROM audit_logs WHERE tenant_id = $1", {tenant_id})) {
      out.insert(row[0]);
    }
    return out;
  }

  static testkit::TestDatabase* db_;
  static testkit::TestServer* server_;
};
testkit::TestDatabase* Invitations::db_ = nullptr;
testkit::TestServer* Invitations::server_ = nullptr;

// A refusal is a problem document with the expected code that names nothing of the other side.
void expect_refused(const HttpResponse& r, int status, const std::string& code,
                    const std::vector<std::string>& secrets = {}) {
  EXPECT_EQ(r.status, status) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/problem+json") << r.body;
  if (!code.empty()) EXPECT_EQ(str(json_of(r), "code"), code) << r.body;
  for (const std::string& s : secrets) {
    if (!s.empty()) EXPECT_EQ(r.body.find(s), std::string::npos) << s << " leaked: " << r.body;
  }
}

TEST_F(Invitations, ANewUserAcceptsWithAPasswordAndIsSignedInAsAMember) {
  Account a = owner("Invite Co");
  std::string email = fresh_email("newbie");
  auto created = invite(a, email, "member");
  ASSERT_EQ(created.status, 201) << created.body;
  object inv = json_of(created);
  EXPECT_EQ(str(inv, "email"), email);
  EXPECT_EQ(str(inv, "role"), "member");
  EXPECT_FALSE(str(inv, "expires_at").empty());
  EXPECT_EQ(created.body.find("token"), std::string::npos) << "the token is only in the mail";

  // The mail: the tenant, the inviter and a link to the web UI's accept page.
  auto stored = testkit::stored_mail_to(*db_, email, "invitation");
  ASSERT_EQ(stored.size(), 1u);
  std::string subject = stored[0].subject;
  EXPECT_NE(subject.find("Invite Co"), std::string::npos) << subject;
  std::string token = mailed_token(email);
  ASSERT_EQ(token.size(), 64u);
  // Stored hashed only.
  EXPECT_EQ(scalar("SELECT count(*) FROM invitations WHERE token_hash = $1", {token}), "0");

  auto listed = call("GET", "/api/invitations", a.access_token);
  ASSERT_EQ(listed.status, 200) << listed.body;
  array data = json_of(listed).at("data").as_array();
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(str(data[0].as_object(), "status"), "open");

  auto accepted = accept_as_new(token, "Newbie");
  ASSERT_EQ(accepted.status, 201) << accepted.body;
  object session = json_of(accepted);
  std::string access = str(session, "access_token");
  ASSERT_FALSE(access.empty()) << accepted.body;
  EXPECT_EQ(str(session.at("tenant").as_object(), "id"), a.tenant_id);
  std::string user_id = str(session.at("user").as_object(), "id");
  EXPECT_TRUE(session.at("user").as_object().at("email_verified").as_bool())
      << "the mailed token proved the address";
  EXPECT_EQ(role_of(a.tenant_id, user_id), "member");
  auto tenant = call("GET", "/api/tenant", access);
  EXPECT_EQ(tenant.status, 200) << tenant.body;
  // The new account signs in with its password.
  auto login = call("POST", "/api/auth/login", "",
                    R"({"email":")" + email + R"(","password":")" + kPassword + R"("})");
  EXPECT_EQ(login.status, 200) << login.body;

  // Single use: the same link again changes nothing.
  int before = members(a.tenant_id);
  expect_refused(accept_as_new(token, "Again"), 409, "invitation_used");
  expect_refused(accept_as(access, token), 409, "invitation_used");
  EXPECT_EQ(members(a.tenant_id), before);
  auto after = json_of(call("GET", "/api/invitations", a.access_token)).at("data").as_array();
  EXPECT_EQ(str(after[0].as_object(), "status"), "used");

  std::set<std::string> actions = audit_actions(a.tenant_id);
  for (const char* action :
       {"invitation.created", "invitation.accepted", "member.added", "invitation.accept_refused"}) {
    EXPECT_TRUE(actions.contains(action)) << action;
  }
  std::string events = scalar(
      "SELECT string_agg(type, ',' ORDER BY id) FROM events WHERE tenant_id = $1 "
      "AND type IN ('member.invited', 'member.added')",
      {a.tenant_id});
  EXPECT_EQ(events, "member.added,member.invited,member.added") << "sign-up's owner first";
}

TEST_F(Invitations, ASignedInUserAcceptsOnlyAnInvitationToTheirOwnAddress) {
  Account a = owner("Host Co");
  Account b = testkit::sign_up(*server_, "Guest Co");
  Account c = testkit::sign_up(*server_, "Stranger Co");
  ASSERT_EQ(invite(a, b.email, "admin").status, 201);
  std::string token = mailed_token(b.email);

  // Someone else, signed in, cannot use b's link.
  expect_refused(accept_as(c.access_token, token), 400, "invitation_invalid", {b.email});
  EXPECT_EQ(role_of(a.tenant_id, c.user_id), "");
  // Nor can anyone create an account for an address that has one.
  expect_refused(accept_as_new(token), 409, "conflict");

  auto accepted = accept_as(b.access_token, token);
  ASSERT_EQ(accepted.status, 200) << accepted.body;
  EXPECT_EQ(str(json_of(accepted), "role"), "admin");
  EXPECT_EQ(role_of(a.tenant_id, b.user_id), "admin");
  auto tenants = call("GET", "/api/tenants", b.access_token);
  EXPECT_EQ(json_of(tenants).at("data").as_array().size(), 2u) << tenants.body;
  auto in_a = call("GET", "/api/members", b.access_token, "", {"X-Tenant-Id: " + a.tenant_id});
  EXPECT_EQ(in_a.status, 200) << in_a.body;

  // An address that already belongs to a member cannot be invited again.
  expect_refused(invite(a, b.email, "member"), 409, "conflict");
  expect_refused(invite(a, a.email, "member"), 409, "conflict");
}

TEST_F(Invitations, RolesVerificationAndBadInputAreRefusedAndChangeNothing) {
  Account unverified = testkit::sign_up(*server_, "Unverified Co");
  expect_refused(invite(unverified, fresh_email("x"), "member"), 403, "email_unverified");
  EXPECT_EQ(scalar("SELECT count(*) FROM invitations WHERE tenant_id = $1", {unverified.tenant_id}),
            "0");
  EXPECT_EQ(scalar("SELECT count(*) FROM mail_messages WHERE tenant_id = $1 AND template = "
                   "'invitation'",
                   {unverified.tenant_id}),
            "0");

  Account a = owner("Roles Co");
  // Four members join below, one more than the free plan's seats: an operator's override (the
  // seat limit has its own test, MeteringNoStripe.SeatsFollowThePlansLimit).
  testkit::sql(db_->admin_url(),
               "INSERT INTO quota_overrides (tenant_id, meter, quota) VALUES ($1, 'seats', NULL)",
               {a.tenant_id});
  // An admin and a member, who joined through invitations.
  Account admin = owner("Admin's own");
  Account member = owner("Member's own");
  ASSERT_EQ(invite(a, admin.email, "admin").status, 201);
  ASSERT_EQ(accept_as(admin.access_token, mailed_token(admin.email)).status, 200);
  ASSERT_EQ(invite(a, member.email, "member").status, 201);
  ASSERT_EQ(accept_as(member.access_token, mailed_token(member.email)).status, 200);
  std::vector<std::string> in_a{"X-Tenant-Id: " + a.tenant_id};

  // An admin invites up to admin, never an owner; a member invites nobody.
  expect_refused(invite(admin, fresh_email("o"), "owner", in_a), 403, "forbidden");
  EXPECT_EQ(invite(admin, fresh_email("ad"), "admin", in_a).status, 201);
  expect_refused(invite(member, fresh_email("m"), "member", in_a), 403, "forbidden");
  // The refusals the handler decides are audited in the tenant (an unverified inviter too).
  EXPECT_NE(scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND action = "
                   "'invitation.refused' AND actor_id = $2 AND metadata->>'code' = 'forbidden'",
                   {a.tenant_id, admin.user_id}),
            "0");
  EXPECT_TRUE(audit_actions(unverified.tenant_id).contains("invitation.refused"));
  EXPECT_EQ(call("GET", "/api/invitations", member.access_token, "", in_a).status, 403);

  std::string email = fresh_email("dup");
  ASSERT_EQ(invite(a, email, "member").status, 201);
  expect_refused(invite(a, email, "admin"), 409, "conflict");
  expect_refused(invite(a, "not-an-address", "member"), 422, "validation_failed");
  expect_refused(invite(a, fresh_email("r"), "superuser"), 422, "validation_failed");
  expect_refused(call("POST", "/api/invitations/accept", "", R"({"token":"00"})"), 400,
                 "invitation_invalid");
  // Without credentials and without a password: sign in first (401, the token stays open).
  std::string anon = fresh_email("anon");
  ASSERT_EQ(invite(a, anon, "member").status, 201);
  std::string token = mailed_token(anon);
  expect_refused(call("POST", "/api/invitations/accept", "", R"({"token":")" + token + R"("})"),
                 401, "unauthorized");
  // A password without a name is a 422 naming it.
  auto nameless = call("POST", "/api/invitations/accept", "",
                       R"({"token":")" + token + R"(","password":")" + kPassword + R"("})");
  expect_refused(nameless, 422, "validation_failed");
  EXPECT_EQ(accept_as_new(token).status, 201);
}

TEST_F(Invitations, RevokedResentAndExpiredLinksAreRefusedAndChangeNothing) {
  Account a = owner("Lifecycle Co");
  std::string email = fresh_email("life");
  auto created = invite(a, email, "member");
  ASSERT_EQ(created.status, 201);
  std::string id = str(json_of(created), "id");
  std::string first = mailed_token(email);

  // Resend: a new link; the first one stops working.
  auto resent = call("POST", "/api/invitations/" + id + "/resend", a.access_token);
  ASSERT_EQ(resent.status, 200) << resent.body;
  std::string second = mailed_token(email);
  ASSERT_NE(first, second);
  EXPECT_EQ(testkit::stored_mail_to(*db_, email).size(), 2u);
  int before = members(a.tenant_id);
  expect_refused(accept_as_new(first), 400, "invitation_invalid");

  // Expired.
  testkit::sql(db_->admin_url(),
               "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE id = $1",
               {id});
  expect_refused(accept_as_new(second), 410, "invitation_expired");
  // A resend renews an expired invitation.
  ASSERT_EQ(call("POST", "/api/invitations/" + id + "/resend", a.access_token).status, 200);
  std::string third = mailed_token(email);

  // Revoked.
  EXPECT_EQ(call("DELETE", "/api/invitations/" + id, a.access_token).status, 204);
  expect_refused(accept_as_new(third), 410, "invitation_revoked");
  expect_refused(call("POST", "/api/invitations/" + id + "/resend", a.access_token), 410,
                 "invitation_revoked");
  expect_refused(call("DELETE", "/api/invitations/" + id, a.access_token), 410,
                 "invitation_revoked");
  EXPECT_EQ(members(a.tenant_id), before);
  EXPECT_EQ(
      scalar("SELECT count(*) FROM users WHERE email_index = $1", {testkit::email_index(email)}),
      "0");
  // After a revocation the address can be invited again.
  EXPECT_EQ(invite(a, email, "member").status, 201);
  EXPECT_EQ(call("DELETE", "/api/invitations/not-a-uuid", a.access_token).status, 404);
}

TEST_F(Invitations, TwoConcurrentAcceptancesSpendTheTokenOnce) {
  Account a = owner("Race Co");
  std::string email = fresh_email("race");
  ASSERT_EQ(invite(a, email, "member").status, 201);
  std::string token = mailed_token(email);
  auto one = std::async(std::launch::async, [&] { return accept_as_new(token, "One"); });
  auto two = std::async(std::launch::async, [&] { return accept_as_new(token, "Two"); });
  int s1 = one.get().status, s2 = two.get().status;
  EXPECT_EQ(std::min(s1, s2), 201);
  EXPECT_EQ(std::max(s1, s2), 409);
  EXPECT_EQ(
      scalar("SELECT count(*) FROM users WHERE email_index = $1", {testkit::email_index(email)}),
      "1");
}

TEST_F(Invitations, AnotherTenantsInvitationsCannotBeReadRevokedResentOrUsed) {
  Account a = owner("Iso A");
  Account b = owner("Iso B");
  std::string email = fresh_email("iso");
  auto created = invite(a, email, "member");
  ASSERT_EQ(created.status, 201);
  std::string id = str(json_of(created), "id");
  std::string token = mailed_token(email);
  std::vector<std::string> secrets{email, id, a.tenant_id, a.slug};

  // B, naming A's tenant: refused by membership.
  std::vector<std::string> as_a{"X-Tenant-Id: " + a.tenant_id};
  expect_refused(call("GET", "/api/invitations", b.access_token, "", as_a), 403, "forbidden",
                 {email});
  expect_refused(invite(b, fresh_email("x"), "member", as_a), 403, "forbidden");
  expect_refused(call("DELETE", "/api/invitations/" + id, b.access_token, "", as_a), 403,
                 "forbidden");
  // B, in its own tenant, with A's invitation id: not found there, and audited in B.
  auto listed = call("GET", "/api/invitations", b.access_token);
  EXPECT_EQ(listed.status, 200);
  EXPECT_EQ(listed.body.find(email), std::string::npos);
  expect_refused(call("DELETE", "/api/invitations/" + id, b.access_token), 404, "not_found",
                 secrets);
  expect_refused(call("POST", "/api/invitations/" + id + "/resend", b.access_token), 404,
                 "not_found", secrets);
  EXPECT_TRUE(audit_actions(b.tenant_id).contains("invitation.refused"));
  // B's owner cannot use A's token for itself either (another address).
  expect_refused(accept_as(b.access_token, token), 400, "invitation_invalid", {email});
  EXPECT_EQ(role_of(a.tenant_id, b.user_id), "");
  // A's invitation is untouched: still open, still mailed once, and still works.
  EXPECT_EQ(testkit::stored_mail_to(*db_, email).size(), 1u);
  auto mine = json_of(call("GET", "/api/invitations", a.access_token)).at("data").as_array();
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(str(mine[0].as_object(), "status"), "open");
  EXPECT_EQ(accept_as_new(token).status, 201);
}

TEST_F(Invitations, UsersCreateTenantsLeaveThemAndOwnersRestoreThem) {
  Account a = owner("First Co");
  auto created = call("POST", "/api/tenants", a.access_token, R"({"name":"Second Co"})");
  ASSERT_EQ(created.status, 201) << created.body;
  object t = json_of(created);
  EXPECT_EQ(str(t, "slug").rfind("second-co", 0), 0u) << created.body;
  EXPECT_EQ(str(t, "role"), "owner");
  std::string second = str(t, "id");
  EXPECT_EQ(role_of(second, a.user_id), "owner");
  EXPECT_EQ(json_of(call("GET", "/api/tenants", a.access_token)).at("data").as_array().size(), 2u);
  auto reserved = call("POST", "/api/tenants", a.access_token, R"({"name":"Admin"})");
  ASSERT_EQ(reserved.status, 201);
  EXPECT_NE(str(json_of(reserved), "slug"), "admin");
  expect_refused(call("POST", "/api/tenants", a.access_token, R"({"name":""})"), 422,
                 "validation_failed");
  EXPECT_EQ(call("POST", "/api/tenants", "", R"({"name":"Anon"})").status, 401);

  // A member leaves; the last owner cannot.
  Account m = owner("Leaver's own");
  ASSERT_EQ(invite(a, m.email, "member").status, 201);
  ASSERT_EQ(accept_as(m.access_token, mailed_token(m.email)).status, 200);
  std::vector<std::string> in_a{"X-Tenant-Id: " + a.tenant_id};
  EXPECT_EQ(call("POST", "/api/tenant/leave", m.access_token, "", in_a).status, 204);
  EXPECT_EQ(role_of(a.tenant_id, m.user_id), "");
  expect_refused(call("POST", "/api/tenant/leave", a.access_token), 409, "conflict");
  EXPECT_EQ(role_of(a.tenant_id, a.user_id), "owner");

  // Deletion is scheduled, then cancelled by an owner within the grace period.
  expect_refused(call("POST", "/api/tenant/restore", a.access_token), 409, "conflict");
  ASSERT_EQ(call("DELETE", "/api/tenant", a.access_token).status, 202);
  auto restored = call("POST", "/api/tenant/restore", a.access_token);
  ASSERT_EQ(restored.status, 200) << restored.body;
  EXPECT_EQ(str(json_of(restored), "status"), "active");
  EXPECT_TRUE(json_of(restored).at("deletion_scheduled_at").is_null());
  EXPECT_TRUE(audit_actions(a.tenant_id).contains("tenant.deletion_cancelled"));
  // Only an owner restores.
  Account admin = owner("Admin's own 2");
  ASSERT_EQ(invite(a, admin.email, "admin").status, 201);
  ASSERT_EQ(accept_as(admin.access_token, mailed_token(admin.email)).status, 200);
  ASSERT_EQ(call("DELETE", "/api/tenant", a.access_token).status, 202);
  EXPECT_EQ(call("POST", "/api/tenant/restore", admin.access_token, "", in_a).status, 403);
  EXPECT_EQ(call("POST", "/api/tenant/restore", a.access_token).status, 200);
}

TEST_F(Invitations, AnOwnerOfTenantsBeingDeletedDeletesTheAccountAndTheAuditLogForgetsThem) {
  Account a = owner("Going Co");
  Account other = owner("Staying Co");
  ASSERT_EQ(invite(other, a.email, "member").status, 201);
  ASSERT_EQ(accept_as(a.access_token, mailed_token(a.email)).status, 200);
  const std::string kWithAddress =
      "SELECT count(*) FROM audit_logs WHERE actor_type = 'user' AND actor_id = $1 "
      "AND (ip <> '' OR user_agent <> '')";
  EXPECT_NE(scalar(kWithAddress, {a.user_id}), "0");

  // The only owner of an active tenant cannot go.
  expect_refused(call("DELETE", "/api/me", a.access_token), 409, "conflict");
  ASSERT_EQ(call("DELETE", "/api/tenant", a.access_token).status, 202);
  EXPECT_EQ(call("DELETE", "/api/me", a.access_token).status, 204);
  EXPECT_EQ(scalar("SELECT count(*) FROM users WHERE id = $1", {a.user_id}), "0");
  // In both tenants: the entries stay, without the user's addresses and user agents.
  EXPECT_EQ(scalar(kWithAddress, {a.user_id}), "0");
  EXPECT_NE(scalar("SELECT count(*) FROM audit_logs WHERE actor_id = $1 AND tenant_id = $2",
                   {a.user_id, other.tenant_id}),
            "0");
  // Other users' entries keep theirs.
  EXPECT_NE(scalar(kWithAddress, {other.user_id}), "0");
}

}  // namespace
}  // namespace hsea
