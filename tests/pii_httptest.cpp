// Personal data at rest (HSEA-047) from outside: what the API writes is sealed in the database
// under its owner's data key (a user's for their sessions, a tenant's for its audit log), and
// the API shows it in plain text to whom may see it.
#include <gtest/gtest.h>

#include <boost/json/serialize.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>

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

class PiiAtRest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new TestDatabase();
    // Not 127.0.0.1: Message-IDs name the public host, and the dump test looks for the client
    // address.
    server_ = new TestServer(*db_, {{"HSEA_PUBLIC_URL", "https://app.hsea.test"}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
  }
  static std::vector<std::vector<std::string>> rows(const std::string& statement,
                                                    const std::vector<std::string>& params) {
    return testkit::sql(db_->admin_url(), statement, params);
  }
  static std::string scalar(const std::string& statement, const std::vector<std::string>& params) {
    auto r = rows(statement, params);
    return r.empty() || r[0].empty() ? "" : r[0][0];
  }
  // The data key a sealed value names must belong to this owner.
  static std::string key_owner(const std::string& sealed) {
    if (sealed.rfind("pii1.", 0) != 0 || sealed.size() < 41) return "not sealed: " + sealed;
    return scalar(
        "SELECT coalesce(owner_tenant::text, 'user ' || owner_user::text) "
        "FROM data_keys WHERE id = $1",
        {sealed.substr(5, 36)});
  }

  static TestDatabase* db_;
  static TestServer* server_;
};
TestDatabase* PiiAtRest::db_ = nullptr;
TestServer* PiiAtRest::server_ = nullptr;

TEST_F(PiiAtRest, SessionsAndAuditEntriesStoreAddressesAndUserAgentsSealedUnderTheirOwnersKeys) {
  const std::string agent_a = "PiiTestAgent/1.0 (alpha)";
  const std::string agent_b = "PiiTestAgent/2.0 (beta)";
  Account a = testkit::sign_up(*server_, "Sealed A", {"User-Agent: " + agent_a});
  Account b = testkit::sign_up(*server_, "Sealed B", {"User-Agent: " + agent_b});

  // Sessions: sealed under the user's key, the agent nowhere in the row.
  for (const Account* acc : {&a, &b}) {
    auto sessions =
        rows("SELECT ip, user_agent, t::text FROM sessions t WHERE user_id = $1", {acc->user_id});
    ASSERT_FALSE(sessions.empty());
    for (const auto& s : sessions) {
      EXPECT_EQ(key_owner(s[0]), "user " + acc->user_id);
      EXPECT_EQ(key_owner(s[1]), "user " + acc->user_id);
      EXPECT_EQ(s[2].find("PiiTestAgent"), std::string::npos) << s[2];
      EXPECT_EQ(s[2].find("127.0.0.1"), std::string::npos) << s[2];
    }
  }
  // Audit entries: sealed under their tenant's key.
  for (const Account* acc : {&a, &b}) {
    auto entries = rows("SELECT ip, user_agent, t::text FROM audit_logs t WHERE tenant_id = $1",
                        {acc->tenant_id});
    ASSERT_FALSE(entries.empty());
    for (const auto& e : entries) {
      if (e[0].empty()) continue;  // an entry without a client (a job's)
      EXPECT_EQ(key_owner(e[0]), acc->tenant_id);
      EXPECT_EQ(key_owner(e[1]), acc->tenant_id);
      EXPECT_EQ(e[2].find("PiiTestAgent"), std::string::npos) << e[2];
      EXPECT_EQ(e[2].find("127.0.0.1"), std::string::npos) << e[2];
    }
  }

  // Through the API, each sees their own in plain text, and only their own.
  HttpResponse sessions =
      http("GET", server_->url("/api/me/sessions"), "", {bearer(a.access_token)});
  ASSERT_EQ(sessions.status, 200) << sessions.body;
  object list = json_of(sessions);
  ASSERT_FALSE(list.at("data").as_array().empty());
  for (const auto& s : list.at("data").as_array()) {
    EXPECT_EQ(str(s.as_object(), "ip"), "127.0.0.1") << sessions.body;
    EXPECT_EQ(str(s.as_object(), "user_agent"), agent_a) << sessions.body;
  }
  EXPECT_EQ(sessions.body.find(agent_b), std::string::npos);

  for (const Account* acc : {&a, &b}) {
    HttpResponse log =
        http("GET", server_->url("/api/audit-logs"), "", {bearer(acc->access_token)});
    ASSERT_EQ(log.status, 200) << log.body;
    object body = json_of(log);
    ASSERT_FALSE(body.at("data").as_array().empty()) << log.body;
    long with_client = 0;
    for (const auto& e : body.at("data").as_array()) {
      // Entries written by jobs have no client; sign-up's have one.
      if (str(e.as_object(), "ip").empty() && str(e.as_object(), "user_agent").empty()) continue;
      ++with_client;
      EXPECT_EQ(str(e.as_object(), "ip"), "127.0.0.1") << log.body;
      EXPECT_EQ(str(e.as_object(), "user_agent"), acc == &a ? agent_a : agent_b) << log.body;
    }
    EXPECT_EQ(std::to_string(with_client),
              scalar("SELECT count(*) FROM audit_logs WHERE tenant_id = $1 AND ip <> ''",
                     {acc->tenant_id}))
        << "every entry with a sealed client opens";
  }

  // Values from before encryption read as they are (rotate-data seals them later).
  const std::string b_entry = scalar(
      "SELECT id::text FROM audit_logs WHERE tenant_id = $1 ORDER BY id LIMIT 1", {b.tenant_id});
  rows("UPDATE audit_logs SET ip = '192.0.2.44', user_agent = 'Legacy/0.1' WHERE id = $1",
       {b_entry});
  HttpResponse log_b = http("GET", server_->url("/api/audit-logs"), "", {bearer(b.access_token)});
  ASSERT_EQ(log_b.status, 200) << log_b.body;
  bool found = false;
  object body_b = json_of(log_b);
  for (const auto& e : body_b.at("data").as_array()) {
    if (str(e.as_object(), "id") != b_entry) continue;
    found = true;
    EXPECT_EQ(str(e.as_object(), "ip"), "192.0.2.44");
    EXPECT_EQ(str(e.as_object(), "user_agent"), "Legacy/0.1");
  }
  EXPECT_TRUE(found) << log_b.body;
}

TEST_F(PiiAtRest, UsersAddressesAndNamesAreSealedAndFoundByTheirBlindIndex) {
  Account a = testkit::sign_up(*server_, "Users Sealed A");
  Account b = testkit::sign_up(*server_, "Users Sealed B");
  for (const Account* acc : {&a, &b}) {
    auto row =
        rows("SELECT email, name, email_index, t::text FROM users t WHERE id = $1", {acc->user_id});
    ASSERT_EQ(row.size(), 1u);
    EXPECT_EQ(key_owner(row[0][0]), "user " + acc->user_id);
    EXPECT_EQ(key_owner(row[0][1]), "user " + acc->user_id);
    EXPECT_EQ(row[0][2], testkit::email_index(acc->email));
    EXPECT_EQ(row[0][3].find(acc->email), std::string::npos) << row[0][3];
    EXPECT_EQ(row[0][3].find(acc->email.substr(0, acc->email.find('@'))), std::string::npos);
  }
  // Shown in plain text to the user, and to the tenant's members only.
  HttpResponse me = http("GET", server_->url("/api/me"), "", {bearer(a.access_token)});
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(str(json_of(me), "email"), a.email);
  HttpResponse members = http("GET", server_->url("/api/members"), "", {bearer(a.access_token)});
  ASSERT_EQ(members.status, 200) << members.body;
  EXPECT_NE(members.body.find(a.email), std::string::npos) << members.body;
  EXPECT_EQ(members.body.find(b.email), std::string::npos) << members.body;

  // Sign-in finds the account by the index, whatever the case of the address; a second
  // sign-up with the same address is refused.
  std::string upper = a.email;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  object login{{"email", upper}, {"password", a.password}};
  HttpResponse in = http("POST", server_->url("/api/auth/login"), boost::json::serialize(login));
  EXPECT_EQ(in.status, 200) << in.body;
  object again{{"email", a.email},
               {"password", a.password},
               {"name", "Again"},
               {"organization_name", "Again Co"}};
  HttpResponse dup = http("POST", server_->url("/api/auth/signup"), boost::json::serialize(again));
  EXPECT_EQ(dup.status, 409) << dup.body;

  // A name change is sealed too.
  object rename{{"name", "Ada Sealed-Lovelace"}};
  HttpResponse renamed = http("PATCH", server_->url("/api/me"), boost::json::serialize(rename),
                              {bearer(a.access_token)});
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(str(json_of(renamed), "name"), "Ada Sealed-Lovelace");
  EXPECT_EQ(key_owner(scalar("SELECT name FROM users WHERE id = $1", {a.user_id})),
            "user " + a.user_id);

  // An account from before sealing (plaintext, no index) still signs in and blocks its
  // address, until rotate-data seals and indexes it.
  const std::string legacy = "legacy-" + a.user_id.substr(24) + "@example.com";
  rows(
      "INSERT INTO users (id, email, name, password_hash) "
      "SELECT uuid_v7(), $1, 'Legacy User', password_hash FROM users WHERE id = $2",
      {legacy, a.user_id});
  object legacy_login{{"email", legacy}, {"password", a.password}};
  HttpResponse legacy_in =
      http("POST", server_->url("/api/auth/login"), boost::json::serialize(legacy_login));
  EXPECT_EQ(legacy_in.status, 200) << legacy_in.body;
  EXPECT_EQ(str(json_of(legacy_in).at("user").as_object(), "email"), legacy) << legacy_in.body;
  object legacy_signup{{"email", legacy},
                       {"password", a.password},
                       {"name", "Twin"},
                       {"organization_name", "Twin Co"}};
  HttpResponse twin =
      http("POST", server_->url("/api/auth/signup"), boost::json::serialize(legacy_signup));
  EXPECT_EQ(twin.status, 409) << twin.body;
}

// The flows that write personal data beyond users and sessions: the e-mail outbox (tenant and
// platform mail), an invitation with its event and audit entry, an e-mail change, a password
// reset request with its job. Afterwards, no table holds any of it in plain text, and a pg_dump
// of the whole database shows none of the addresses, names, client address or user agent.
TEST_F(PiiAtRest, AfterTheAccountFlowsAWholeDatabaseDumpHoldsNoAddressNameClientOrUserAgent) {
  const std::string agent = "DumpProbeAgent/7.7 (quixotic)";
  const std::vector<std::string> ua{"User-Agent: " + agent};
  auto with_ua = [&](const std::string& token) {
    return std::vector<std::string>{bearer(token), "User-Agent: " + agent};
  };
  Account a = testkit::sign_up(*server_, "Dump Probe", ua);
  const std::string tag = a.user_id.substr(24);
  object login{{"email", a.email}, {"password", a.password}};
  ASSERT_EQ(http("POST", server_->url("/api/auth/login"), boost::json::serialize(login), ua).status,
            200);
  object rename{{"name", "Zebediah Quixotic-Dumpling"}};
  ASSERT_EQ(http("PATCH", server_->url("/api/me"), boost::json::serialize(rename),
                 with_ua(a.access_token))
                .status,
            200);
  // Test setup: inviting needs a verified address (verification has its own tests).
  rows("UPDATE users SET email_verified = true WHERE id = $1", {a.user_id});

  // An invitation accepted by a new user, who is then removed: an account without a tenant,
  // whose mail is platform mail (sealed under the user's own key).
  const std::string invitee = "wanderer-" + tag + "@example.com";
  const std::string invitee_name = "Philomena Wanderwell";
  object invite{{"email", invitee}, {"role", "member"}};
  HttpResponse invited = http("POST", server_->url("/api/invitations"),
                              boost::json::serialize(invite), with_ua(a.access_token));
  ASSERT_EQ(invited.status, 201) << invited.body;
  auto invitation_mail = testkit::stored_mail_to(*db_, invitee, "invitation");
  ASSERT_EQ(invitation_mail.size(), 1u);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(invitation_mail[0].text, m, std::regex("token=([0-9a-f]{64})")))
      << invitation_mail[0].text;
  object accept{{"token", m[1].str()}, {"password", a.password}, {"name", invitee_name}};
  HttpResponse accepted =
      http("POST", server_->url("/api/invitations/accept"), boost::json::serialize(accept), ua);
  ASSERT_EQ(accepted.status, 201) << accepted.body;
  const std::string c_id = str(json_of(accepted).at("user").as_object(), "id");
  ASSERT_EQ(
      http("DELETE", server_->url("/api/members/" + c_id), "", with_ua(a.access_token)).status,
      204);
  // A second invitation stays open (its address sealed in the invitation, the mail, nowhere
  // else).
  const std::string pending = "pending-" + tag + "@example.com";
  object invite2{{"email", pending}, {"role", "admin"}};
  ASSERT_EQ(http("POST", server_->url("/api/invitations"), boost::json::serialize(invite2),
                 with_ua(a.access_token))
                .status,
            201);

  // Password resets: A (a tenant's mail) and the tenantless invitee (platform mail).
  for (const std::string& address : {a.email, invitee}) {
    object forgot{{"email", address}};
    HttpResponse r =
        http("POST", server_->url("/api/auth/password/forgot"), boost::json::serialize(forgot), ua);
    ASSERT_EQ(r.status, 202) << r.body;
  }
  // An e-mail change request: a confirmation to the new address, a notice to the old one.
  const std::string changed = "renamed-" + tag + "@example.com";
  object change{{"email", changed}, {"password", a.password}};
  HttpResponse requested = http("POST", server_->url("/api/me/email"),
                                boost::json::serialize(change), with_ua(a.access_token));
  ASSERT_EQ(requested.status, 202) << requested.body;

  // The jobs (reset look-ups, welcome mail) finish.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline &&
         scalar("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND "
                "kind <> 'mail.deliver'",
                {}) != "0") {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  auto resets = testkit::stored_mail_to(*db_, a.email, "password_reset");
  ASSERT_EQ(resets.size(), 1u) << "the reset request's job ran";
  EXPECT_EQ(resets[0].tenant_id, a.tenant_id);
  auto platform = testkit::stored_mail_to(*db_, invitee, "password_reset");
  ASSERT_EQ(platform.size(), 1u) << "the tenantless account's reset";
  EXPECT_EQ(platform[0].tenant_id, "") << "platform mail";
  EXPECT_EQ(platform[0].user_id, c_id);
  EXPECT_EQ(platform[0].to_name, invitee_name);
  EXPECT_NE(platform[0].text.find("reset-password?token="), std::string::npos);
  EXPECT_EQ(testkit::stored_mail_to(*db_, changed, "email_change").size(), 1u);

  // Table by table: every message's recipient and parts sealed under its tenant's key, or its
  // recipient's for platform mail.
  auto messages = rows(
      "SELECT coalesce(tenant_id::text, 'user ' || user_id::text), to_address, to_name, subject, "
      "html, text FROM mail_messages",
      {});
  ASSERT_GE(messages.size(), 8u);
  for (const auto& row : messages) {
    for (std::size_t i = 1; i < row.size(); ++i) {
      if (row[i].empty()) continue;  // no name
      EXPECT_EQ(key_owner(row[i]), row[0]) << row[i].substr(0, 60);
    }
  }
  // The reset requests' jobs carry them sealed.
  auto payloads = rows("SELECT payload::text FROM jobs WHERE kind = 'identity.password_reset'", {});
  ASSERT_EQ(payloads.size(), 2u);
  for (const auto& p : payloads) EXPECT_EQ(p[0].find("\"email\""), std::string::npos) << p[0];

  // No audit entry, event or job names an address.
  for (const auto& e : rows("SELECT action, metadata::text FROM audit_logs WHERE "
                            "metadata::text LIKE '%@%'",
                            {})) {
    ADD_FAILURE() << e[0] << " names an address: " << e[1];
  }
  EXPECT_EQ(scalar("SELECT count(*) FROM events WHERE data::text LIKE '%@%'", {}), "0");
  EXPECT_EQ(scalar("SELECT count(*) FROM jobs WHERE payload::text LIKE '%@%'", {}), "0");

  const char* pg_bin = std::getenv("PG_BIN");
  std::string command = std::string(pg_bin != nullptr ? pg_bin : "/usr/lib/postgresql/15/bin") +
                        "/pg_dump --data-only '" + db_->admin_url() + "'";
  std::string dump;
  {
    FILE* pipe = ::popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    char buffer[4096];
    std::size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) dump.append(buffer, n);
    ASSERT_EQ(::pclose(pipe), 0) << command;
  }
  // The dump has the rows (sealed), so finding nothing means something.
  for (const std::string& present :
       {a.user_id, c_id, std::string("pii1."), std::string("member.invited"),
        std::string("identity.password_reset"), std::string("email_change_notice"),
        std::string("verify_email")}) {
    EXPECT_NE(dump.find(present), std::string::npos) << present << " is not in the dump";
  }
  const std::string local = a.email.substr(0, a.email.find('@'));
  for (const std::string& needle :
       {a.email, local, std::string("User of Dump Probe"), std::string("Zebediah"), invitee,
        std::string("wanderer-"), std::string("Wanderwell"), pending, changed,
        std::string("DumpProbeAgent"), std::string("127.0.0.1")}) {
    std::size_t at = dump.find(needle);
    std::string table = at == std::string::npos ? "" : dump.substr(dump.rfind("COPY ", at), 80);
    EXPECT_EQ(at, std::string::npos)
        << needle << " is in the dump, in " << table << ": "
        << dump.substr(at == std::string::npos ? 0 : (at > 300 ? at - 300 : 0), 600);
  }
}

TEST_F(PiiAtRest, InvitationsStoreTheAddressSealedUnderTheTenantsKeyAndRefuseDuplicatesByIndex) {
  Account a = testkit::sign_up(*server_, "Inviting A");
  Account b = testkit::sign_up(*server_, "Inviting B");
  // Test setup: inviting needs a verified address (the verification flow has its own tests).
  rows("UPDATE users SET email_verified = true WHERE id = ANY($1::uuid[])",
       {"{" + a.user_id + "," + b.user_id + "}"});
  const std::string invitee = "invitee-" + a.user_id.substr(24) + "@example.com";
  object body{{"email", invitee}, {"role", "member"}};
  for (const Account* acc : {&a, &b}) {
    HttpResponse r = http("POST", server_->url("/api/invitations"), boost::json::serialize(body),
                          {bearer(acc->access_token)});
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(str(json_of(r), "email"), invitee);
  }
  // The same address again in one tenant: refused by the blind index.
  object upper{{"email", "INVITEE-" + a.user_id.substr(24) + "@EXAMPLE.COM"}, {"role", "member"}};
  HttpResponse again = http("POST", server_->url("/api/invitations"), boost::json::serialize(upper),
                            {bearer(a.access_token)});
  EXPECT_EQ(again.status, 409) << again.body;

  for (const Account* acc : {&a, &b}) {
    auto row = rows("SELECT email, email_index, t::text FROM invitations t WHERE tenant_id = $1",
                    {acc->tenant_id});
    ASSERT_EQ(row.size(), 1u);
    EXPECT_EQ(key_owner(row[0][0]), acc->tenant_id);
    EXPECT_EQ(row[0][1].size(), 64u);
    EXPECT_EQ(row[0][2].find("invitee-"), std::string::npos) << row[0][2];
    HttpResponse list =
        http("GET", server_->url("/api/invitations"), "", {bearer(acc->access_token)});
    ASSERT_EQ(list.status, 200) << list.body;
    EXPECT_NE(list.body.find(invitee), std::string::npos) << list.body;
  }
}

// `hsea keys rotate-data` as an operator runs it: the built binary, beside a live server, then
// after a change of HSEA_SECRET_KEY. HSEA_PII_KEY_CACHE_SECONDS=1 on both sides keeps its wait
// (the servers' current-key cache, plus 5 s) short.
TEST(PiiRotation, TheBinaryRotatesBesideALiveServerAndAfterASecretChangeAndTheServerReadsAll) {
  const std::string old_secret = "test-secret-key-0123456789abcdef0123456789";
  const std::string new_secret = "rotated-secret-key-abcdefghijklmnopqrstuvwxyz-0123";
  TestDatabase db;
  auto sql = [&](const std::string& statement, const std::vector<std::string>& params = {}) {
    return testkit::sql(db.admin_url(), statement, params);
  };
  auto key_ids = [&](const std::string& where) {
    std::set<std::string> ids;
    for (const auto& row : sql("SELECT id::text FROM data_keys " + where)) ids.insert(row[0]);
    return ids;
  };
  // Every sealed value in the tables rotation walks, with the key it names.
  auto sealed_keys = [&] {
    std::set<std::string> ids;
    for (const auto& row :
         sql("SELECT substr(v, 6, 36) FROM (SELECT email AS v FROM users UNION ALL "
             "SELECT name FROM users UNION ALL SELECT ip FROM sessions UNION ALL "
             "SELECT user_agent FROM sessions UNION ALL SELECT ip FROM audit_logs UNION ALL "
             "SELECT user_agent FROM audit_logs UNION ALL SELECT to_address FROM mail_messages "
             "UNION ALL SELECT subject FROM mail_messages UNION ALL SELECT html FROM mail_messages "
             "UNION ALL SELECT text FROM mail_messages) s WHERE v LIKE 'pii1.%'")) {
      ids.insert(row[0]);
    }
    return ids;
  };
  auto rotate = [&](const std::string& secret, const std::string& previous) {
    std::map<std::string, std::string> env{{"HSEA_ENV", "test"},
                                           {"HSEA_SECRET_KEY", secret},
                                           {"HSEA_PREVIOUS_SECRET_KEY", previous},
                                           {"HSEA_PII_KEY_CACHE_SECONDS", "1"},
                                           {"HSEA_DATABASE_URL", db.app_url()},
                                           {"HSEA_DATABASE_ADMIN_URL", db.admin_url()}};
    return testkit::run_hsea({"keys", "rotate-data"}, env);
  };
  const std::string agent = "RotationProbe/3.1";
  // What the server shows a signed-in user: their address and name, their sessions' client
  // and agent, their tenant's audit entries' client and agent, all opened.
  auto check_reads = [&](const TestServer& server, const Account& a, const std::string& name,
                         const std::string& label) {
    SCOPED_TRACE(label);
    object login{{"email", a.email}, {"password", a.password}};
    HttpResponse in = http("POST", server.url("/api/auth/login"), boost::json::serialize(login),
                           {"User-Agent: " + agent});
    ASSERT_EQ(in.status, 200) << in.body;  // found by the blind index, under the current secret
    const std::string token = str(json_of(in), "access_token");
    const std::vector<std::string> h{bearer(token), "User-Agent: " + agent};
    HttpResponse me = http("GET", server.url("/api/me"), "", h);
    ASSERT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(str(json_of(me), "email"), a.email) << me.body;
    EXPECT_EQ(str(json_of(me), "name"), name) << me.body;
    HttpResponse sessions = http("GET", server.url("/api/me/sessions"), "", h);
    ASSERT_EQ(sessions.status, 200) << sessions.body;
    object list = json_of(sessions);
    ASSERT_GE(list.at("data").as_array().size(), 2u) << sessions.body;
    for (const auto& s : list.at("data").as_array()) {
      EXPECT_EQ(str(s.as_object(), "ip"), "127.0.0.1") << sessions.body;
      EXPECT_EQ(str(s.as_object(), "user_agent"), agent) << sessions.body;
    }
    HttpResponse log = http("GET", server.url("/api/audit-logs"), "", h);
    ASSERT_EQ(log.status, 200) << log.body;
    long with_client = 0;
    object entries = json_of(log);
    for (const auto& e : entries.at("data").as_array()) {
      if (str(e.as_object(), "ip").empty()) continue;
      ++with_client;
      EXPECT_EQ(str(e.as_object(), "ip"), "127.0.0.1") << log.body;
      EXPECT_EQ(str(e.as_object(), "user_agent"), agent) << log.body;
    }
    EXPECT_GE(with_client, 2) << log.body;
    HttpResponse members = http("GET", server.url("/api/members"), "", h);
    ASSERT_EQ(members.status, 200) << members.body;
    EXPECT_NE(members.body.find(a.email), std::string::npos) << members.body;
  };

  Account a, b;
  {
    TestServer server(db, {{"HSEA_PII_KEY_CACHE_SECONDS", "1"}});
    a = testkit::sign_up(server, "Rotation A", {"User-Agent: " + agent});
    b = testkit::sign_up(server, "Rotation B", {"User-Agent: " + agent});
    check_reads(server, a, "User of Rotation A", "before rotation");
    const std::set<std::string> before = key_ids("");
    ASSERT_EQ(before.size(), 4u) << "two tenants' keys, two users'";

    // 1. Same secret, the server running: every value sealed again under new keys, the old
    // keys deleted, the wait about a second (not a minute).
    auto started = std::chrono::steady_clock::now();
    testkit::RunResult r = rotate(old_secret, "");
    auto took = std::chrono::steady_clock::now() - started;
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("4 retired"), std::string::npos) << r.output;
    EXPECT_LT(took, std::chrono::seconds(30)) << r.output;
    std::set<std::string> after = key_ids("");
    for (const auto& id : after) EXPECT_EQ(before.count(id), 0u) << id << " survived rotation";
    for (const auto& id : sealed_keys()) EXPECT_EQ(after.count(id), 1u) << id;
    check_reads(server, a, "User of Rotation A", "after rotation, the same server");
    check_reads(server, b, "User of Rotation B", "after rotation, the same server");
    // New writes use a new current key (the server's cache of the retired one expired).
    object rename{{"name", "Renamed After Rotation"}};
    HttpResponse renamed = http("PATCH", server.url("/api/me"), boost::json::serialize(rename),
                                {bearer(a.access_token), "User-Agent: " + agent});
    ASSERT_EQ(renamed.status, 200) << renamed.body;
    std::string sealed_name = sql("SELECT name FROM users WHERE id = $1", {a.user_id})[0][0];
    ASSERT_EQ(sealed_name.rfind("pii1.", 0), 0u) << sealed_name;
    EXPECT_EQ(after.count(sealed_name.substr(5, 36)), 1u) << "sealed under a retired key";
  }

  // 2. A new secret: without the previous one the command changes nothing; with it, every key
  // is re-wrapped under the new secret and every value (and blind index) renewed.
  const std::vector<std::vector<std::string>> wrapped_before =
      sql("SELECT id::text, wrapped FROM data_keys ORDER BY id");
  testkit::RunResult refused = rotate(new_secret, "");
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_EQ(sql("SELECT id::text, wrapped FROM data_keys ORDER BY id"), wrapped_before);
  testkit::RunResult r = rotate(new_secret, old_secret);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("4 data keys re-wrapped"), std::string::npos) << r.output;
  // The access tokens' signing key is sealed under the secret too: after a change of the
  // secret the operator also starts a new one (docs/encryption.md).
  testkit::RunResult signing =
      testkit::run_hsea({"keys", "rotate"}, {{"HSEA_ENV", "test"},
                                             {"HSEA_SECRET_KEY", new_secret},
                                             {"HSEA_DATABASE_URL", db.app_url()},
                                             {"HSEA_DATABASE_ADMIN_URL", db.admin_url()}});
  ASSERT_EQ(signing.exit_code, 0) << signing.output;

  std::map<std::string, std::string> with_previous{{"HSEA_SECRET_KEY", new_secret},
                                                   {"HSEA_PREVIOUS_SECRET_KEY", old_secret},
                                                   {"HSEA_PII_KEY_CACHE_SECONDS", "1"}};
  {
    TestServer server(db, with_previous);
    check_reads(server, a, "Renamed After Rotation", "new secret, previous one set");
    check_reads(server, b, "User of Rotation B", "new secret, previous one set");
  }
  {
    TestServer server(db, {{"HSEA_SECRET_KEY", new_secret}});
    check_reads(server, a, "Renamed After Rotation", "new secret alone");
    check_reads(server, b, "User of Rotation B", "new secret alone");
  }
}

// A queued message whose key is gone (shredded with its owner: here the key row is deleted, as
// deleting an account deletes its user's key) is never sent: it fails for good, naming why.
TEST(PiiMail, AMessageWhoseKeyIsGoneFailsInsteadOfBeingSent) {
  TestDatabase db;
  // Nothing listens on port 1: every delivery attempt fails, so the message stays queued.
  std::map<std::string, std::string> env{{"HSEA_SMTP_URL", "smtp://127.0.0.1:1"},
                                         {"HSEA_JOB_POLL_MS", "100"}};
  Account a;
  {
    TestServer server(db, env);
    a = testkit::sign_up(server, "Shredded Mail");
  }
  auto status = [&] {
    auto r = testkit::sql(db.admin_url(),
                          "SELECT status, coalesce(last_error, '') FROM mail_messages "
                          "WHERE tenant_id = $1 AND template = 'email_verification'",
                          {a.tenant_id});
    return r.empty() ? std::vector<std::string>{} : r[0];
  };
  ASSERT_EQ(status().at(0), "queued");
  testkit::sql(db.admin_url(), "DELETE FROM data_keys WHERE owner_tenant = $1", {a.tenant_id});
  TestServer server(db, env);  // a fresh process: no key cached
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && status().at(0) != "failed") {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status().at(0), "failed");
  EXPECT_NE(status().at(1).find("data key is gone"), std::string::npos) << status().at(1);
}

}  // namespace
}  // namespace hsea
