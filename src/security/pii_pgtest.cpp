// Sealed personal data against a real PostgreSQL: data keys, crypto-shredding, rotation.
#include <gtest/gtest.h>

#include "core/ids.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "db/migrations.hpp"
#include "security/pii.hpp"
#include "testkit/async.hpp"
#include "testkit/testkit.hpp"

namespace hsea::security::pii {
namespace {

using testkit::sql;

constexpr db::Query kInsertTenant{"test_insert_tenant",
                                  "INSERT INTO tenants (id, slug, name) VALUES ($1, 'c', 'C')"};
constexpr std::string_view kSecret = "pii-test-secret-0123456789abcdef0123456789";

class Pii : public ::testing::Test {
 protected:
  void SetUp() override {
    configure(kSecret);
    forget_cached_keys();
    tenant_a = core::uuid_v7();
    tenant_b = core::uuid_v7();
    sql(db.admin_url(),
        "INSERT INTO tenants (id, slug, name) VALUES ($1, 'a', 'A'), ($2, 'b', 'B')",
        {tenant_a, tenant_b});
  }
  std::string one(const std::string& statement, const std::vector<std::string>& params = {}) {
    auto rows = sql(db.admin_url(), statement, params);
    return rows.empty() || rows[0].empty() ? "" : rows[0][0];
  }
  testkit::TestDatabase db;
  boost::asio::io_context io;
  std::string tenant_a, tenant_b;
};

TEST_F(Pii, SealedValuesOpenOnlyWithTheirPurposeAndShowNothingInTheDatabase) {
  db::Pool pool(io, db::PoolOptions{.url = db.app_url(), .size = 1});
  auto seal_two =
      [](db::Pool& p,
         std::string tenant) -> boost::asio::awaitable<std::pair<std::string, std::string>> {
    std::string first = co_await seal(p, tenant_owner(tenant), "users.email", "ada@example.com");
    std::string second = co_await seal(p, tenant_owner(tenant), "users.email", "ada@example.com");
    co_return std::pair{first, second};
  };
  auto [first, second] = testkit::run_sync(io, seal_two(pool, tenant_a));
  EXPECT_TRUE(is_sealed(first));
  EXPECT_NE(first, second) << "a fresh nonce each time";
  EXPECT_EQ(key_id_of(first), key_id_of(second)) << "one current key per owner";
  EXPECT_EQ(first.find("ada"), std::string::npos);
  EXPECT_EQ(one("SELECT count(*) FROM data_keys"), "1");
  EXPECT_EQ(one("SELECT count(*) FROM data_keys WHERE wrapped LIKE '%' || $1 || '%'",
                {std::string(key_id_of(first))}),
            "0");

  forget_cached_keys();
  EXPECT_EQ(open("users.email", first), std::nullopt) << "its key is not loaded";
  auto load = [](db::Pool& p, std::string v) -> boost::asio::awaitable<void> {
    std::vector<std::string> values{v};
    co_await load_keys(p, std::move(values));
  };
  testkit::run_sync(io, load(pool, first));
  EXPECT_EQ(open("users.email", first), "ada@example.com");
  EXPECT_EQ(open("users.name", first), std::nullopt) << "another column's purpose";
  std::string tampered = first;
  tampered[tampered.size() - 3] = tampered[tampered.size() - 3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(open("users.email", tampered), std::nullopt);
  EXPECT_EQ(open("users.email", "not sealed (written before encryption)"),
            "not sealed (written before encryption)");

  // The app role cannot read the key table, only the functions.
  EXPECT_THROW(sql(db.app_url(), "SELECT * FROM data_keys"), std::exception);
}

// A transaction's seal: the owner may be created by the transaction itself, and a key it
// created must not outlive a rollback in the cache (anything sealed with it later would never
// open again).
TEST_F(Pii, ATransactionSealsForAnOwnerItCreatesAndARolledBackKeyIsNeverReused) {
  db::Pool pool(io, db::PoolOptions{.url = db.app_url(), .size = 2});
  const std::string tenant_c = core::uuid_v7();
  // The tenant and its first sealed value in one transaction, rolled back.
  auto rolled_back = [](db::Pool& p, std::string tenant) -> boost::asio::awaitable<std::string> {
    db::Scope scope = db::tenant_scope(tenant);  // as sign-up's: the tenant it creates
    db::Transaction tx = co_await p.begin(scope);
    co_await tx.exec(kInsertTenant, db::params(tenant));
    std::string first = co_await seal(tx, tenant_owner(tenant), "audit_logs.ip", "192.0.2.9");
    std::string again = co_await seal(tx, tenant_owner(tenant), "audit_logs.ip", "192.0.2.9");
    EXPECT_EQ(key_id_of(first), key_id_of(again)) << "the transaction's one key";
    EXPECT_EQ(open("audit_logs.ip", first), "192.0.2.9");
    co_return std::string(key_id_of(first));
  };
  std::string gone = testkit::run_sync(io, rolled_back(pool, tenant_c));
  EXPECT_EQ(one("SELECT count(*) FROM data_keys"), "0") << "rolled back with the transaction";

  // Committed this time: the next seal (in a transaction or not) must not name the dead key.
  auto committed = [](db::Pool& p, std::string tenant) -> boost::asio::awaitable<std::string> {
    db::Scope scope = db::tenant_scope(tenant);  // as sign-up's: the tenant it creates
    db::Transaction tx = co_await p.begin(scope);
    co_await tx.exec(kInsertTenant, db::params(tenant));
    std::string v = co_await seal(tx, tenant_owner(tenant), "audit_logs.ip", "192.0.2.9");
    co_await tx.commit();
    std::string after = co_await seal(p, tenant_owner(tenant), "audit_logs.ip", "192.0.2.10");
    EXPECT_EQ(key_id_of(after), key_id_of(v)) << "the committed key is the current one";
    co_return std::string(key_id_of(after));
  };
  std::string kept = testkit::run_sync(io, committed(pool, tenant_c));
  EXPECT_NE(kept, gone);
  EXPECT_EQ(
      one("SELECT count(*) FROM data_keys WHERE id = $1 AND owner_tenant = $2", {kept, tenant_c}),
      "1");

  // An existing owner's key, taken in a transaction, is cached as current and shared.
  auto existing = [](db::Pool& p, std::string tenant) -> boost::asio::awaitable<bool> {
    std::string outside = co_await seal(p, tenant_owner(tenant), "audit_logs.ip", "192.0.2.1");
    db::Scope platform;  // named: no temporary in a co_await'ed call (g++ 12)
    db::Transaction tx = co_await p.begin(platform);
    std::string inside = co_await seal(tx, tenant_owner(tenant), "audit_logs.ip", "192.0.2.1");
    std::string empty = co_await seal(tx, tenant_owner(tenant), "audit_logs.ip", "");
    co_await tx.commit();
    co_return key_id_of(outside) == key_id_of(inside) && empty.empty();
  };
  forget_cached_keys();
  EXPECT_TRUE(testkit::run_sync(io, existing(pool, tenant_a)));
}

TEST_F(Pii, AnotherSecretOpensNothing) {
  db::BlockingConnection conn(db.admin_url(), "test");
  std::string sealed = seal_blocking(conn, tenant_owner(tenant_a), "audit_logs.ip", "192.0.2.7");
  configure("a-different-secret-0123456789abcdef012345678");
  load_keys_blocking(conn, {sealed});
  EXPECT_EQ(open("audit_logs.ip", sealed), std::nullopt);
  configure(kSecret);
  load_keys_blocking(conn, {sealed});
  EXPECT_EQ(open("audit_logs.ip", sealed), "192.0.2.7");
}

TEST_F(Pii, PurgingATenantDestroysItsKeySoItsDataIsUnreadableEverywhere) {
  db::BlockingConnection conn(db.admin_url(), "test");
  std::string a = seal_blocking(conn, tenant_owner(tenant_a), "audit_logs.ip", "192.0.2.1");
  std::string b = seal_blocking(conn, tenant_owner(tenant_b), "audit_logs.ip", "192.0.2.2");
  EXPECT_NE(key_id_of(a), key_id_of(b)) << "each tenant has its own key";
  sql(db.admin_url(), "DELETE FROM tenants WHERE id = $1", {tenant_a});
  forget_cached_keys();
  load_keys_blocking(conn, {a, b});
  EXPECT_EQ(open("audit_logs.ip", a), std::nullopt) << "the purged tenant's key is gone";
  EXPECT_EQ(open("audit_logs.ip", b), "192.0.2.2");
}

TEST_F(Pii, BlindIndexIsKeyedDeterministicAndPerPurpose) {
  std::string x = blind_index("users.email", "ada@example.com");
  EXPECT_EQ(x.size(), 64u);
  EXPECT_EQ(x, blind_index("users.email", "ada@example.com"));
  EXPECT_NE(x, blind_index("users.email", "bob@example.com"));
  EXPECT_NE(x, blind_index("invitations.email", "ada@example.com"));
  configure("a-different-secret-0123456789abcdef012345678");
  EXPECT_NE(x, blind_index("users.email", "ada@example.com"));
  configure(kSecret);
}

// Rotation re-wraps keys under a new secret, seals every registered value again (plaintext
// left from before encryption included) and deletes the keys nothing uses any more.
// Rows from before sealing: rotation seals them under their owner's key and fills the blind
// index of an indexed column (users.email_index), so look-ups by index find them afterwards.
TEST_F(Pii, RotationSealsPlaintextRowsAndFillsTheirBlindIndex) {
  register_sealed_column({.table = "users",
                          .id_column = "id",
                          .column = "email",
                          .purpose = "users.email",
                          .owner_column = "id",
                          .owner_is_tenant = false,
                          .index_column = "email_index"});
  register_sealed_column({.table = "audit_logs",
                          .id_column = "id",
                          .column = "ip",
                          .purpose = "audit_logs.ip",
                          .owner_column = "tenant_id",
                          .owner_is_tenant = true});
  const std::string user = core::uuid_v7();
  sql(db.admin_url(),
      "INSERT INTO users (id, email, name) VALUES ($1, 'Old.Timer@Example.com', 'O')", {user});
  const std::string blank = core::uuid_v7();
  sql(db.admin_url(),
      "INSERT INTO audit_logs (tenant_id, id, actor_type, action, ip) "
      "VALUES ($1, $2, 'system', 'test.blank', '')",
      {tenant_a, blank});
  RotationReport r = rotate_data(db.admin_url(), "", std::chrono::seconds(0));
  EXPECT_EQ(r.values_resealed, 1) << "the address; an empty ip is not personal data";
  std::string stored = one("SELECT email FROM users WHERE id = $1", {user});
  EXPECT_TRUE(is_sealed(stored));
  EXPECT_EQ(one("SELECT owner_user FROM data_keys WHERE id = $1", {std::string(key_id_of(stored))}),
            user);
  EXPECT_EQ(one("SELECT email_index FROM users WHERE id = $1", {user}),
            blind_index("users.email", "old.timer@example.com"));
  EXPECT_EQ(one("SELECT ip FROM audit_logs WHERE id = $1", {blank}), "");
  db::BlockingConnection conn(db.admin_url(), "test");
  load_keys_blocking(conn, {stored});
  EXPECT_EQ(open("users.email", stored), "Old.Timer@Example.com");
}

// mail_messages' shape: a tenant's rows under the tenant's key, rows without a tenant (platform
// mail) under the key of the user their user column names, rows with neither left alone.
TEST_F(Pii, RotationSealsRowsWithoutATenantUnderTheirUsersKey) {
  sql(db.admin_url(),
      "CREATE TABLE pii_outbox (id uuid PRIMARY KEY, tenant_id uuid, user_id uuid, body text)");
  register_sealed_column({.table = "pii_outbox",
                          .id_column = "id",
                          .column = "body",
                          .purpose = "pii_outbox.body",
                          .owner_column = "tenant_id",
                          .owner_is_tenant = true,
                          .user_owner_column = "user_id"});
  const std::string user = core::uuid_v7();
  sql(db.admin_url(), "INSERT INTO users (id, email, name) VALUES ($1, 'p@example.com', 'P')",
      {user});
  const std::string tenant_row = core::uuid_v7(), platform_row = core::uuid_v7(),
                    orphan_row = core::uuid_v7();
  sql(db.admin_url(),
      "INSERT INTO pii_outbox VALUES ($1, $2, $3, 'to the tenant'), ($4, NULL, $3, 'to the user'), "
      "($5, NULL, NULL, 'to nobody')",
      {tenant_row, tenant_a, user, platform_row, orphan_row});
  RotationReport r = rotate_data(db.admin_url(), "", std::chrono::seconds(0));
  EXPECT_GE(r.values_resealed, 2);
  auto owner_of = [&](const std::string& id) {
    std::string stored = one("SELECT body FROM pii_outbox WHERE id = $1", {id});
    if (!is_sealed(stored)) return "plain: " + stored;
    return one(
        "SELECT coalesce(owner_tenant::text, 'user ' || owner_user::text) FROM data_keys "
        "WHERE id = $1",
        {std::string(key_id_of(stored))});
  };
  EXPECT_EQ(owner_of(tenant_row), tenant_a);
  EXPECT_EQ(owner_of(platform_row), "user " + user);
  EXPECT_EQ(owner_of(orphan_row), "plain: to nobody") << "no owner: no key to seal it under";
  std::string stored = one("SELECT body FROM pii_outbox WHERE id = $1", {platform_row});
  db::BlockingConnection conn(db.admin_url(), "test");
  load_keys_blocking(conn, {stored});
  EXPECT_EQ(open("pii_outbox.body", stored), "to the user");
}

TEST_F(Pii, RotationResealsEveryValueAndRewrapsUnderANewSecret) {
  sql(db.admin_url(),
      "CREATE TABLE pii_probe (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, note text)");
  register_sealed_column({.table = "pii_probe",
                          .id_column = "id",
                          .column = "note",
                          .purpose = "pii_probe.note",
                          .owner_column = "tenant_id",
                          .owner_is_tenant = true});
  std::vector<std::string> ids;
  {
    db::BlockingConnection conn(db.admin_url(), "test");
    for (int i = 0; i < 7; ++i) {
      ids.push_back(core::uuid_v7());
      const std::string& tenant = i % 2 ? tenant_a : tenant_b;
      std::string value = "note " + std::to_string(i);
      std::string stored =
          i == 6 ? value : seal_blocking(conn, tenant_owner(tenant), "pii_probe.note", value);
      sql(db.admin_url(), "INSERT INTO pii_probe VALUES ($1, $2, $3)",
          {ids.back(), tenant, stored});
    }
  }
  std::string old_keys = one("SELECT string_agg(id::text, ',' ORDER BY id) FROM data_keys");

  // The secret changes; the previous one is given so the keys can be re-wrapped.
  const std::string next = "the-next-secret-0123456789abcdef0123456789ab";
  configure(next);
  EXPECT_THROW(rotate_data(db.admin_url(), "", std::chrono::seconds(0)), std::runtime_error)
      << "keys wrapped under another secret need the previous one";
  RotationReport r = rotate_data(db.admin_url(), kSecret, std::chrono::seconds(0));
  EXPECT_EQ(r.keys_rewrapped, 2);
  EXPECT_EQ(r.keys_retired, 2);
  EXPECT_EQ(r.values_resealed, 7);
  EXPECT_EQ(r.keys_deleted, 2);
  std::string new_keys = one("SELECT string_agg(id::text, ',' ORDER BY id) FROM data_keys");
  EXPECT_EQ(one("SELECT count(*) FROM data_keys WHERE retired_at IS NULL"), "2");
  EXPECT_NE(new_keys.find(','), std::string::npos);
  for (const auto& k : {old_keys.substr(0, 36), old_keys.substr(37, 36)}) {
    EXPECT_EQ(new_keys.find(k), std::string::npos) << "old key " << k << " deleted";
  }

  db::BlockingConnection conn(db.admin_url(), "test");
  for (int i = 0; i < 7; ++i) {
    std::string stored = one("SELECT note FROM pii_probe WHERE id = $1", {ids[i]});
    EXPECT_TRUE(is_sealed(stored)) << i;
    load_keys_blocking(conn, {stored});
    EXPECT_EQ(open("pii_probe.note", stored), "note " + std::to_string(i));
  }
  configure(kSecret);
}

// Migration 0022 on a database with rows from before it: addresses leave audit metadata,
// member.invited events and finished reset jobs; platform mail no longer waiting is redacted;
// queued work keeps what it needs to run.
TEST(SealedMailMigration, ConvertsTheRowsThatNamedAddresses) {
  testkit::TestDatabase db(false);
  std::vector<db::Migration> before;
  for (const db::Migration& m : db::embedded_migrations()) {
    if (m.name >= std::string_view("0022")) break;
    before.push_back(m);
  }
  db::migrate(db.admin_url(), db.app_url(), before);
  const std::string tenant = core::uuid_v7();
  auto exec = [&](const std::string& statement, const std::vector<std::string>& params = {}) {
    return sql(db.admin_url(), statement, params);
  };
  exec("INSERT INTO tenants (id, slug, name) VALUES ($1, 'old', 'Old')", {tenant});
  exec(
      "INSERT INTO audit_logs (tenant_id, id, actor_type, action, metadata) VALUES "
      "($1, uuid_v7(), 'system', 'invitation.created', "
      "'{\"email\": \"old-invitee@example.com\", \"role\": \"member\"}'), "
      "($1, uuid_v7(), 'system', 'user.email_changed', "
      "'{\"old_email\": \"a@example.com\", \"new_email\": \"b@example.com\"}'), "
      "($1, uuid_v7(), 'system', 'branding.updated', '{\"footer\": \"mail@example.com\"}')",
      {tenant});
  exec(
      "INSERT INTO events (tenant_id, type, data, actor_type) VALUES ($1, 'member.invited', "
      "'{\"invitation_id\": \"x\", \"email\": \"old-invitee@example.com\", \"role\": \"member\"}', "
      "'system')",
      {tenant});
  exec(
      "INSERT INTO jobs (kind, payload, status, finished_at) VALUES "
      "('identity.password_reset', '{\"email\": \"done@example.com\"}', 'succeeded', now()), "
      "('identity.password_reset', '{\"email\": \"waiting@example.com\"}', 'queued', NULL)");
  exec(
      "INSERT INTO mail_messages (tenant_id, id, template, from_address, to_address, subject, "
      "html, text, message_id, status) VALUES "
      "(NULL, uuid_v7(), 'password_reset', 'f@example.com', 'sent@example.com', 'S', 'H', 'T', "
      "'<1@x>', 'sent'), "
      "(NULL, uuid_v7(), 'password_reset', 'f@example.com', 'queued@example.com', 'S', 'H', "
      "'T', '<2@x>', 'queued'), "
      "($1, uuid_v7(), 'welcome', 'f@example.com', 'tenant@example.com', 'S', 'H', 'T', "
      "'<3@x>', 'sent')",
      {tenant});

  db::migrate(db.admin_url(), db.app_url(), db::embedded_migrations());
  auto rows = exec("SELECT action, metadata::text FROM audit_logs ORDER BY action");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0][1], R"({"footer": "mail@example.com"})") << "other actions are untouched";
  EXPECT_EQ(rows[1][1], R"({"role": "member"})");
  EXPECT_EQ(rows[2][1], "{}");
  EXPECT_EQ(exec("SELECT data::text FROM events")[0][0],
            R"({"role": "member", "invitation_id": "x"})");
  EXPECT_EQ(exec("SELECT payload::text FROM jobs ORDER BY status")[0][0],
            R"({"email": "waiting@example.com"})")
      << "a queued request still runs";
  EXPECT_EQ(exec("SELECT payload::text FROM jobs ORDER BY status")[1][0], "{}");
  auto mail = exec("SELECT to_address, html FROM mail_messages ORDER BY message_id");
  ASSERT_EQ(mail.size(), 3u);
  EXPECT_EQ(mail[0], (std::vector<std::string>{"redacted@invalid", ""}));
  EXPECT_EQ(mail[1], (std::vector<std::string>{"queued@example.com", "H"})) << "still to send";
  EXPECT_EQ(mail[2], (std::vector<std::string>{"tenant@example.com", "H"}))
      << "a tenant's: sealed by the next rotate-data";
}

}  // namespace
}  // namespace hsea::security::pii
