#include "db/migrations.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "core/ids.hpp"
#include "testkit/testkit.hpp"

namespace hsea::db {
namespace {

using testkit::sql;
constexpr auto npos = std::string::npos;

TEST(Migrations, ApplyOnceAndSecondRunChangesNothing) {
  testkit::TestDatabase db(false);
  auto first = migrate(db.admin_url(), db.app_url(), embedded_migrations());
  EXPECT_TRUE(first.role_created);
  EXPECT_EQ(first.applied.size(), embedded_migrations().size());
  auto second = migrate(db.admin_url(), db.app_url(), embedded_migrations());
  EXPECT_FALSE(second.role_created);
  EXPECT_TRUE(second.applied.empty());
  EXPECT_EQ(sql(db.admin_url(), "SELECT count(*) FROM schema_migrations")[0][0],
            std::to_string(embedded_migrations().size()));
}

TEST(Migrations, ConcurrentRunnersApplyEachMigrationOnce) {
  testkit::TestDatabase db(false);
  std::vector<std::thread> runners;
  std::atomic<int> applied{0}, failed{0};
  std::mutex errors_mutex;
  std::string errors;
  for (int i = 0; i < 3; ++i) {
    runners.emplace_back([&] {
      try {
        applied += static_cast<int>(
            migrate(db.admin_url(), db.app_url(), embedded_migrations()).applied.size());
      } catch (const std::exception& e) {
        ++failed;
        std::lock_guard lock(errors_mutex);
        errors += std::string(e.what()) + "\n";
      }
    });
  }
  for (auto& t : runners) t.join();
  EXPECT_EQ(failed.load(), 0) << errors;
  // The advisory lock serialises the runners: each migration is applied by exactly one.
  EXPECT_EQ(applied.load(), static_cast<int>(embedded_migrations().size()));
}

TEST(Migrations, ChangedAppliedFileIsAnErrorNamingIt) {
  testkit::TestDatabase db;
  std::vector<Migration> changed = embedded_migrations();
  std::string edited = std::string(changed[0].sql) + "\n-- edited";
  changed[0].sql = edited;
  try {
    migrate(db.admin_url(), db.app_url(), changed);
    FAIL() << "a changed migration was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::string(changed[0].name)), std::string::npos)
        << e.what();
  }
}

TEST(Migrations, FailedMigrationIsRolledBackAndNamed) {
  testkit::TestDatabase db;
  std::vector<Migration> more = embedded_migrations();
  more.push_back({"9999_broken.sql", "CREATE TABLE half_done (id int); SELECT 1/0;"});
  try {
    migrate(db.admin_url(), db.app_url(), more);
    FAIL() << "a failing migration was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("9999_broken.sql"), std::string::npos);
  }
  EXPECT_EQ(sql(db.admin_url(), "SELECT to_regclass('half_done') IS NULL")[0][0], "t");
}

TEST(Migrations, ApplicationRoleIsUnprivilegedAndOwnsNothing) {
  testkit::TestDatabase db;
  auto role = sql(db.app_url(),
                  "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles "
                  "WHERE rolname = current_user");
  ASSERT_EQ(role.size(), 1u);
  EXPECT_EQ(role[0], (std::vector<std::string>{"f", "f", "f", "f"}));
  auto owned = sql(db.admin_url(),
                   "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                   "WHERE r.rolname = $1 OR r.rolname = 'hsea_app_privileges'",
                   {sql(db.app_url(), "SELECT current_user")[0][0]});
  EXPECT_EQ(owned[0][0], "0");
  // It cannot change the schema or the migration record.
  EXPECT_THROW(sql(db.app_url(), "CREATE TABLE sneaky (id int)"), std::runtime_error);
  EXPECT_THROW(sql(db.app_url(), "DELETE FROM schema_migrations"), std::runtime_error);
  EXPECT_THROW(sql(db.app_url(), "ALTER TABLE tenants DISABLE ROW LEVEL SECURITY"),
               std::runtime_error);
}

TEST(AuditRetention, ApplicationRoleCannotPruneRecentEntries) {
  testkit::TestDatabase db;
  std::string tenant = "0190f5d2-7c3a-7b8e-9a01-23456789abcd";
  sql(db.admin_url(), "INSERT INTO tenants (id, slug, name) VALUES ($1, 'keep', 'Keep')", {tenant});
  sql(db.admin_url(),
      "INSERT INTO audit_logs (tenant_id, id, actor_type, action, created_at) VALUES "
      "($1, gen_random_uuid(), 'system', 'ten.days', now() - interval '10 days'), "
      "($1, gen_random_uuid(), 'system', 'forty.days', now() - interval '40 days')",
      {tenant});
  // The server's role asks for one day: the function's 30-day floor keeps the recent entry.
  EXPECT_EQ(sql(db.app_url(), "SELECT audit_prune(1)")[0][0], "1");
  EXPECT_EQ(sql(db.admin_url(), "SELECT string_agg(action, ',') FROM audit_logs")[0][0],
            "ten.days");
  // The owner (hsea audit prune) may go down to one day.
  EXPECT_EQ(sql(db.admin_url(), "SELECT audit_prune(1)")[0][0], "1");
  // And the server's role cannot delete entries or tenants directly.
  EXPECT_THROW(sql(db.app_url(), "DELETE FROM audit_logs"), std::runtime_error);
  EXPECT_THROW(sql(db.app_url(), "SET app.tenant_id = '" + tenant + "'; DELETE FROM tenants"),
               std::runtime_error);
}

// The database itself keeps an owner in every tenant (migration 0004), whoever runs the SQL.
TEST(KeepAnOwner, NoStatementLeavesATenantWithoutAnOwner) {
  testkit::TestDatabase db;
  std::string tenant = "0190f5d2-7c3a-7b8e-9a01-23456789abc0";
  std::string first = "0190f5d2-7c3a-7b8e-9a01-23456789abc1";
  std::string second = "0190f5d2-7c3a-7b8e-9a01-23456789abc2";
  sql(db.admin_url(), "INSERT INTO tenants (id, slug, name) VALUES ($1, 'owned', 'Owned')",
      {tenant});
  for (const std::string& user : {first, second}) {
    sql(db.admin_url(),
        "INSERT INTO users (id, email, name) VALUES ($1::uuid, $1::text || '@x.test', 'U')",
        {user});
    sql(db.admin_url(),
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
        {tenant, user});
  }
  auto owners = [&] {
    return sql(db.admin_url(), "SELECT count(*) FROM memberships WHERE role = 'owner'")[0][0];
  };
  // Two owners: one may step down; then the other can neither step down nor leave, nor can
  // both go in one statement, by role change, membership removal or account deletion.
  sql(db.admin_url(), "UPDATE memberships SET role = 'admin' WHERE user_id = $1", {first});
  EXPECT_THROW(sql(db.admin_url(), "UPDATE memberships SET role = 'member'"), std::runtime_error);
  EXPECT_THROW(sql(db.admin_url(), "DELETE FROM memberships WHERE user_id = $1", {second}),
               std::runtime_error);
  EXPECT_THROW(sql(db.admin_url(), "DELETE FROM users WHERE id = $1", {second}),
               std::runtime_error);
  EXPECT_EQ(owners(), "1");
  sql(db.admin_url(), "UPDATE memberships SET role = 'owner' WHERE user_id = $1", {first});
  EXPECT_THROW(sql(db.admin_url(), "DELETE FROM users"), std::runtime_error);
  EXPECT_THROW(sql(db.admin_url(), "UPDATE memberships SET role = 'billing'"), std::runtime_error);
  EXPECT_EQ(owners(), "2");
  sql(db.admin_url(), "DELETE FROM users WHERE id = $1", {first});
  EXPECT_EQ(owners(), "1");
  // The refusal is SQLSTATE 23000 naming the rule (the server answers 409).
  try {
    sql(db.admin_url(), "DELETE FROM memberships");
    ADD_FAILURE() << "the last owner was removed";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("without an owner"), std::string::npos) << e.what();
  }
  // Deleting the tenant itself (the purge) takes its memberships along.
  sql(db.admin_url(), "DELETE FROM tenants WHERE id = $1", {tenant});
  EXPECT_EQ(sql(db.admin_url(), "SELECT count(*) FROM memberships")[0][0], "0");
}

TEST(RowLevelSecurityLint, RealSchemaIsClean) {
  testkit::TestDatabase db;
  auto problems = lint_row_level_security(db.admin_url());
  EXPECT_TRUE(problems.empty()) << problems.front();
}

TEST(RowLevelSecurityLint, CatchesTablesThatBreakTheRule) {
  testkit::TestDatabase db;
  sql(db.admin_url(),
      "CREATE TABLE leaky (tenant_id uuid NOT NULL, id uuid, PRIMARY KEY (tenant_id, id))");
  sql(db.admin_url(),
      "CREATE TABLE half (tenant_id uuid NOT NULL, id uuid, PRIMARY KEY (tenant_id, id));"
      "ALTER TABLE half ENABLE ROW LEVEL SECURITY;"
      "CREATE POLICY p ON half FOR SELECT USING "
      "(tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)");
  sql(db.admin_url(),
      "CREATE TABLE unindexed (id uuid PRIMARY KEY, tenant_id uuid NOT NULL);"
      "ALTER TABLE unindexed ENABLE ROW LEVEL SECURITY; ALTER TABLE unindexed FORCE ROW LEVEL "
      "SECURITY; CREATE POLICY p ON unindexed FOR ALL "
      "USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid) "
      "WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)");
  auto problems = lint_row_level_security(db.admin_url());
  auto has = [&](const std::string& text) {
    for (const auto& p : problems) {
      if (p == text) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("leaky: row-level security is not enabled"));
  EXPECT_TRUE(has("leaky: row-level security is not forced"));
  EXPECT_TRUE(has("leaky: has no policy"));
  EXPECT_TRUE(has("half: row-level security is not forced"));
  EXPECT_TRUE(has("half: a policy is not FOR ALL with USING and WITH CHECK on app.tenant_id"));
  EXPECT_TRUE(has("unindexed: tenant_id does not lead any index"));
  EXPECT_EQ(problems.size(), 6u);
  // And migrate refuses to finish while the schema breaks the rule.
  EXPECT_THROW(migrate(db.admin_url(), db.app_url(), embedded_migrations()), std::runtime_error);
}

// -------------------------------------------------------------------------- tenant isolation
//
// Row-level security is the one tenant boundary (docs/ARCHITECTURE.md, "Tenant isolation"). The
// tables under test come from pg_catalog, not from a list here, so a new table is checked the
// day it lands:
//   * a table with a tenant_id column is tenant-owned, scoped by app.tenant_id;
//   * otherwise a table with a user_id column is user-owned, scoped by app.user_id (sessions,
//     refresh tokens: migrations/0002_identity.sql);
//   * the registries those columns reference (tenants, users) are scoped by their own key;
//   * every other relation must be in kNotTenantScoped, with the reason.

// Deliberately not scoped to a tenant or a user. The test fails when an entry no longer exists
// or has grown a tenant_id or user_id column, so the list cannot outlive its tables or hide a
// table that became tenant-owned.
struct NotScoped {
  std::string_view table;
  std::string_view reason;
};
constexpr NotScoped kNotTenantScoped[] = {
    // Written by `hsea migrate` as the owner role; the server never reads it.
    {"schema_migrations", "the record of applied migrations"},
    // One key ring for the deployment: tokens of every tenant are signed with it, and the
    // private keys are sealed with HSEA_SECRET_KEY.
    {"signing_keys", "the JWT signing keys"},
    // Each tenant's and user's data key, wrapped with HSEA_SECRET_KEY; the app role has no
    // rights on the table and reaches keys only through pii_current_key and pii_data_keys.
    {"data_keys", "the wrapped data keys of personal data"},
    // The platform's price list (HSEA-021), the same for every tenant.
    {"plans", "the plans every tenant chooses from"},
    // Stripe's events as received: they name a Stripe customer, not a tenant, until a handler
    // maps them to one (and then writes only into that tenant's tables).
    {"stripe_events", "Stripe's webhook events, each stored once by id"},
    // One row: up to where usage_rollup() has read usage_events; only that function uses it.
    {"usage_rollup_state", "the usage rollup's watermark"},
    // The Stripe meter of each metered HSEA meter (migration 0025): the platform's, like plans.
    {"stripe_meters", "the Stripe billing meters of metered meters"},
};

struct ScopedTable {
  std::string table;
  std::string column;   // the owner's id
  std::string setting;  // app.tenant_id or app.user_id
};

struct Classified {
  std::vector<ScopedTable> scoped;
  std::vector<std::string> problems;
};

constexpr const char* kRelations = R"sql(
SELECT c.relname,
       c.relkind IN ('r', 'p') AS is_table,
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped),
       EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped),
       -- "tenant_id:id" for the table tenant_id columns reference, "user_id:id" for users
       (SELECT string_agg(DISTINCT fk.attname || ':' || ref.attname, ',')
          FROM pg_constraint con
          JOIN pg_attribute fk ON fk.attrelid = con.conrelid AND fk.attnum = con.conkey[1]
          JOIN pg_attribute ref ON ref.attrelid = con.confrelid AND ref.attnum = con.confkey[1]
         WHERE con.contype = 'f' AND con.confrelid = c.oid AND cardinality(con.conkey) = 1
           AND fk.attname IN ('tenant_id', 'user_id'))
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   -- A partition is reached through its parent, whose policy applies (the application role
   -- holds no rights on partitions: PartitionsAreReachableOnlyThroughTheirParent).
   AND NOT c.relispartition
 ORDER BY c.relname)sql";

Classified classify(const std::string& admin_url) {
  Classified out;
  std::set<std::string_view> listed_and_found;
  for (const auto& row : sql(admin_url, kRelations)) {
    const std::string& name = row[0];
    bool is_table = row[1] == "t", has_tenant = row[2] == "t", has_user = row[3] == "t";
    const std::string& referenced_as = row[4];
    const NotScoped* listed = nullptr;
    for (const auto& entry : kNotTenantScoped) {
      if (entry.table == name) listed = &entry;
    }
    std::optional<ScopedTable> scoped;
    if (has_tenant) {
      scoped = ScopedTable{name, "tenant_id", "app.tenant_id"};
    } else if (has_user) {
      scoped = ScopedTable{name, "user_id", "app.user_id"};
    } else if (referenced_as.starts_with("tenant_id:") && referenced_as.find(',') == npos) {
      scoped = ScopedTable{name, referenced_as.substr(10), "app.tenant_id"};
    } else if (referenced_as.starts_with("user_id:") && referenced_as.find(',') == npos) {
      scoped = ScopedTable{name, referenced_as.substr(8), "app.user_id"};
    }
    if (listed != nullptr) {
      listed_and_found.insert(listed->table);
      if (scoped) {
        out.problems.push_back(name + ": listed in kNotTenantScoped but scoped by " +
                               scoped->column + ": remove it from the list");
      }
    } else if (!is_table) {
      // A view runs with its owner's rights (the owner bypasses row-level security), a
      // materialized view or foreign table has none: each needs a decision of its own.
      out.problems.push_back(name + ": a view or foreign table in the app schema: make its " +
                             "scoping explicit, then list it in kNotTenantScoped");
    } else if (!scoped) {
      out.problems.push_back(name + ": neither tenant- nor user-owned: give it tenant_id and " +
                             "row-level security, or list it in kNotTenantScoped with the reason");
    }
    if (scoped && listed == nullptr && is_table) out.scoped.push_back(*scoped);
  }
  for (const auto& entry : kNotTenantScoped) {
    if (!listed_and_found.contains(entry.table)) {
      out.problems.push_back("kNotTenantScoped lists " + std::string(entry.table) + " (" +
                             std::string(entry.reason) + "), which no longer exists");
    }
  }
  return out;
}

// Two tenants A and B, each with its owner (users a and b), a session, two refresh tokens, an
// API key and two audit entries: rows of both owners in every scoped table. The one hand-kept
// part: a table added later has no rows here, and EveryScopedTableShowsRowsOnlyToTheirOwner
// fails for it (it is never skipped) until rows are added.
struct Owners {
  std::string tenant_a = core::uuid_v7(), tenant_b = core::uuid_v7();
  std::string user_a = core::uuid_v7(), user_b = core::uuid_v7();
  std::string a(const ScopedTable& t) const {
    return t.setting == "app.tenant_id" ? tenant_a : user_a;
  }
  std::string b(const ScopedTable& t) const {
    return t.setting == "app.tenant_id" ? tenant_b : user_b;
  }
};

void seed(const testkit::TestDatabase& db, const Owners& o) {
  for (auto [tenant, user, tag] : {std::tuple{o.tenant_a, o.user_a, std::string("a")},
                                   std::tuple{o.tenant_b, o.user_b, std::string("b")}}) {
    std::string session = core::uuid_v7();
    sql(db.admin_url(), "INSERT INTO tenants (id, slug, name) VALUES ($1, $2, $2)",
        {tenant, "rls-" + tag});
    sql(db.admin_url(), "INSERT INTO users (id, email, name) VALUES ($1, $2, $3)",
        {user, tag + "@example.com", "User " + tag});
    sql(db.admin_url(),
        "INSERT INTO memberships (tenant_id, user_id, role) VALUES ($1, $2, 'owner')",
        {tenant, user});
    sql(db.admin_url(),
        "INSERT INTO sessions (id, user_id, kind, active_tenant_id, expires_at) "
        "VALUES ($1, $2, 'token', $3, now() + interval '1 day')",
        {session, user, tenant});
    sql(db.admin_url(), "INSERT INTO user_totp (user_id, secret_sealed) VALUES ($1, 'sealed')",
        {user});
    sql(db.admin_url(),
        "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, 'code-' || $2)",
        {user, tag});
    sql(db.admin_url(),
        "INSERT INTO mfa_challenges (token_hash, user_id, active_tenant_id, cookie, expires_at) "
        "VALUES ('challenge-' || $1, $2, $3, false, now() + interval '5 minutes')",
        {tag, user, tenant});
    sql(db.admin_url(),
        "INSERT INTO account_tokens (token_hash, user_id, purpose, email, expires_at) "
        "VALUES (encode(sha256($1::bytea), 'hex'), $2, 'verify_email', $3, "
        "now() + interval '1 day')",
        {"account-" + tag, user, tag + "@example.com"});
    for (std::string n : {"1", "2"}) {
      sql(db.admin_url(),
          "INSERT INTO refresh_tokens (token_hash, session_id, user_id, expires_at) "
          "VALUES ($1, $2, $3, now() + interval '1 day')",
          {"hash-" + tag + n, session, user});
      sql(db.admin_url(),
          "INSERT INTO audit_logs (tenant_id, id, actor_type, actor_id, action) "
          "VALUES ($1, $2, 'user', $3, 'seed.' || $4)",
          {tenant, core::uuid_v7(), user, n});
    }
    sql(db.admin_url(),
        "INSERT INTO api_keys (tenant_id, id, name, prefix, secret_hash, scopes, created_by) "
        "VALUES ($1, $2, 'seed', $3, 'hash', '{read}', $4)",
        {tenant, core::uuid_v7(), "hsea_" + tag + core::random_hex(4), user});
    sql(db.admin_url(), "INSERT INTO jobs (tenant_id, kind) VALUES ($1, 'seed.job')", {tenant});
    sql(db.admin_url(),
        "INSERT INTO events (tenant_id, type, data, actor_type) "
        "VALUES ($1, 'seed.event', '{}', 'system')",
        {tenant});
    sql(db.admin_url(), "INSERT INTO tenant_branding (tenant_id, product_name) VALUES ($1, $2)",
        {tenant, "Brand " + tag});
    sql(db.admin_url(),
        "INSERT INTO tenant_settings (tenant_id, allowed_origins) VALUES ($1, ARRAY[$2])",
        {tenant, "https://" + tag + ".example.com"});
    sql(db.admin_url(),
        "INSERT INTO mail_messages (tenant_id, id, template, from_address, to_address, subject, "
        "html, text, message_id, status) VALUES ($1, $2, 'welcome', 'no-reply@localhost', $3, "
        "'Hi', '<p>Hi</p>', 'Hi', $4, 'stored')",
        {tenant, core::uuid_v7(), tag + "@example.com", "<" + core::uuid_v7() + "@localhost>"});
    std::string endpoint = core::uuid_v7(), delivery = core::uuid_v7(), event = core::uuid_v7();
    sql(db.admin_url(),
        "INSERT INTO webhook_endpoints (tenant_id, id, url, secret_sealed) "
        "VALUES ($1, $2, 'https://example.com/' || $3, 'sealed')",
        {tenant, endpoint, tag});
    sql(db.admin_url(),
        "INSERT INTO webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, body) "
        "VALUES ($1, $2, $3, $4, 'seed.event', '{}')",
        {tenant, delivery, endpoint, event});
    sql(db.admin_url(),
        "INSERT INTO webhook_attempts (tenant_id, id, delivery_id, endpoint_id, event_id, "
        "attempt, status_code, duration_ms) VALUES ($1, $2, $3, $4, $5, 1, 500, 12)",
        {tenant, core::uuid_v7(), delivery, endpoint, event});
    sql(db.admin_url(),
        "INSERT INTO invitations (tenant_id, id, email, role, token_hash, invited_by, expires_at) "
        "VALUES ($1, $2, $3, 'member', $4, $5, now() + interval '7 days')",
        {tenant, core::uuid_v7(), "invitee-" + tag + "@example.com", "hash-" + tag, user});
    // The history row comes from the subscription's trigger.
    sql(db.admin_url(),
        "INSERT INTO subscriptions (tenant_id, id, plan_id, status, stripe_customer_id) "
        "VALUES ($1, $2, 'starter', 'active', 'cus_' || $3)",
        {tenant, core::uuid_v7(), tag});
    sql(db.admin_url(), "INSERT INTO platform_staff (user_id) VALUES ($1)", {user});
    sql(db.admin_url(),
        "INSERT INTO rate_limit_overrides (tenant_id, rule, requests, period_seconds) "
        "VALUES ($1, 'api', 10, 1)",
        {tenant});
    sql(db.admin_url(),
        "INSERT INTO rate_limit_stats (tenant_id, hour, rule, key_kind, limited, requests) "
        "VALUES ($1, date_trunc('hour', now()), 'api', 'tenant', 1, 2)",
        {tenant});
    sql(db.admin_url(),
        "INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at, idempotency_key) "
        "VALUES ($1, $2, 'api_calls', 1, now(), $3)",
        {tenant, core::uuid_v7(), "key-" + tag});
    sql(db.admin_url(), "INSERT INTO usage_event_keys (tenant_id, idempotency_key) VALUES ($1, $2)",
        {tenant, "key-" + tag});
    sql(db.admin_url(),
        "INSERT INTO usage_rollups (tenant_id, granularity, meter, period_start, quantity) "
        "VALUES ($1, 'day', 'api_calls', date_trunc('day', now()), 1)",
        {tenant});
    sql(db.admin_url(),
        "INSERT INTO usage_warnings (tenant_id, meter, period_start, used, quota) "
        "VALUES ($1, 'api_calls', date_trunc('month', now()), 80, 100)",
        {tenant});
    sql(db.admin_url(),
        "INSERT INTO quota_overrides (tenant_id, meter, quota) VALUES ($1, 'api_calls', 10)",
        {tenant});
    // Metered usage reported to Stripe, the storage gauge (migration 0025).
    sql(db.admin_url(),
        "INSERT INTO usage_stripe_reports (tenant_id, meter, reported_until) "
        "VALUES ($1, 'api_calls', now())",
        {tenant});
    sql(db.admin_url(),
        "INSERT INTO usage_gauges (tenant_id, meter, value) VALUES ($1, 'storage_bytes', 1)",
        {tenant});
    // Invoices (migration 0019).
    std::string invoice = core::uuid_v7();
    sql(db.admin_url(),
        "INSERT INTO invoices (tenant_id, id, stripe_invoice_id, status, currency, "
        "stripe_created_at) VALUES ($1, $2, 'in_seed_' || $3, 'open', 'usd', now())",
        {tenant, invoice, tag});
    sql(db.admin_url(),
        "INSERT INTO invoice_lines (tenant_id, invoice_id, position, amount) "
        "VALUES ($1, $2, 0, 100)",
        {tenant, invoice});
    sql(db.admin_url(),
        "INSERT INTO billing_dunning (tenant_id, invoice_id, suspend_at) "
        "VALUES ($1, $2, now() + interval '7 days')",
        {tenant, invoice});
  }
}

std::string quoted(const std::string& identifier) { return "\"" + identifier + "\""; }

// A script run as the application role, with one setting made first ("" for none).
std::vector<std::vector<std::string>> as_app(const testkit::TestDatabase& db,
                                             const std::string& setting, const std::string& value,
                                             const std::string& statement) {
  std::string prefix =
      setting.empty() ? "" : "SELECT set_config('" + setting + "', '" + value + "', false); ";
  return sql(db.app_url(), prefix + statement);
}

TEST(TenantIsolation, EveryTableIsScopedOrListedAsNotScoped) {
  testkit::TestDatabase db;
  Classified found = classify(db.admin_url());
  for (const auto& p : found.problems) ADD_FAILURE() << p;
  // The catalog query itself is checked too: it finds the tables the review found missing.
  std::set<std::string> names;
  for (const auto& t : found.scoped) names.insert(t.table + ":" + t.column + ":" + t.setting);
  for (const char* expected :
       {"tenants:id:app.tenant_id", "users:id:app.user_id", "memberships:tenant_id:app.tenant_id",
        "sessions:user_id:app.user_id", "refresh_tokens:user_id:app.user_id",
        "api_keys:tenant_id:app.tenant_id", "audit_logs:tenant_id:app.tenant_id",
        "jobs:tenant_id:app.tenant_id", "events:tenant_id:app.tenant_id",
        "tenant_branding:tenant_id:app.tenant_id", "mail_messages:tenant_id:app.tenant_id",

        "webhook_endpoints:tenant_id:app.tenant_id", "webhook_deliveries:tenant_id:app.tenant_id",
        "webhook_attempts:tenant_id:app.tenant_id", "invitations:tenant_id:app.tenant_id",
        "subscriptions:tenant_id:app.tenant_id", "subscription_history:tenant_id:app.tenant_id",
        "usage_events:tenant_id:app.tenant_id"}) {
    EXPECT_TRUE(names.contains(expected)) << expected;
  }
}

TEST(TenantIsolation, EveryScopedTableForcesPoliciesWithUsingAndWithCheck) {
  testkit::TestDatabase db;
  Classified found = classify(db.admin_url());
  ASSERT_FALSE(found.scoped.empty());
  for (const ScopedTable& t : found.scoped) {
    SCOPED_TRACE(t.table);
    auto flags = sql(db.admin_url(),
                     "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                     "WHERE oid = $1::regclass",
                     {quoted(t.table)});
    EXPECT_EQ(flags[0][0], "t") << t.table << ": row-level security is not enabled";
    EXPECT_EQ(flags[0][1], "t") << t.table << ": row-level security is not forced";
    auto policies = sql(db.admin_url(),
                        "SELECT policyname, cmd, coalesce(qual, ''), coalesce(with_check, '') "
                        "FROM pg_policies WHERE schemaname = 'public' AND tablename = $1",
                        {t.table});
    EXPECT_FALSE(policies.empty()) << t.table << ": has no policy";
    std::string needle = "'" + t.setting + "'";
    bool reads = false, writes = false;
    for (const auto& p : policies) {
      const std::string &name = p[0], &cmd = p[1], &qual = p[2], &check = p[3];
      bool needs_using = cmd != "INSERT",
           needs_check = cmd == "ALL" || cmd == "INSERT" || cmd == "UPDATE";
      if (needs_using) {
        EXPECT_NE(qual.find(needle), npos)
            << t.table << "." << name << ": USING does not test " << t.setting << ": " << qual;
      }
      if (needs_check) {
        EXPECT_NE(check.find(needle), npos)
            << t.table << "." << name << ": WITH CHECK does not test " << t.setting
            << " (a FOR ALL policy without it reuses USING)";
      }
      reads |= (cmd == "ALL" || cmd == "SELECT") && !qual.empty();
      writes |= (cmd == "ALL" || cmd == "INSERT") && !check.empty();
    }
    EXPECT_TRUE(reads) << t.table << ": no policy with USING governs SELECT";
    EXPECT_TRUE(writes) << t.table << ": no policy with WITH CHECK governs INSERT";
  }
}

TEST(TenantIsolation, EveryScopedTableShowsRowsOnlyToTheirOwner) {
  testkit::TestDatabase db;
  Owners owners;
  seed(db, owners);
  std::string app_role = sql(db.app_url(), "SELECT current_user")[0][0];
  Classified found = classify(db.admin_url());
  ASSERT_FALSE(found.scoped.empty());
  for (const ScopedTable& t : found.scoped) {
    SCOPED_TRACE(t.table + " scoped by " + t.column + " = " + t.setting);
    std::string table = quoted(t.table), column = quoted(t.column);
    std::string a = owners.a(t), b = owners.b(t);
    auto count_of = [&](const std::string& owner) {
      return sql(db.admin_url(),
                 "SELECT count(*) FROM " + table + " WHERE " + column + "::text = $1",
                 {owner})[0][0];
    };
    std::string rows_a = count_of(a), rows_b = count_of(b);
    if (rows_a == "0" || rows_b == "0") {
      ADD_FAILURE() << t.table
                    << ": needs rows of two owners to prove anything: add them to seed()";
      continue;
    }

    // No owner set: nothing. A query without WHERE as the owner of A: exactly A's rows.
    EXPECT_EQ(as_app(db, "", "", "SELECT count(*) FROM " + table)[0][0], "0");
    auto seen = as_app(db, t.setting, a, "SELECT " + column + "::text FROM " + table);
    EXPECT_EQ(std::to_string(seen.size()), rows_a);
    for (const auto& row : seen) EXPECT_EQ(row[0], a) << "a row of another owner was visible";
    if (t.setting == "app.tenant_id") {
      // A user alone unlocks no tenant's rows.
      EXPECT_EQ(as_app(db, "app.user_id", owners.user_a, "SELECT count(*) FROM " + table)[0][0],
                "0");
    }

    // Writes for B while acting as A are refused: by the policy's WITH CHECK where the role
    // may write at all, by the missing privilege otherwise. The INSERT is a copy of one of B's
    // rows; the UPDATE moves A's rows to B; the DELETE aimed at B's rows finds none.
    auto may = [&](const char* privilege) {
      return sql(db.admin_url(), "SELECT has_table_privilege($1, $2, $3)",
                 {app_role, table, privilege})[0][0] == "t";
    };
    auto expect_refused = [&](const char* privilege, const std::string& statement) {
      try {
        as_app(db, t.setting, a, statement);
        ADD_FAILURE() << t.table << ": allowed: " << statement;
      } catch (const std::runtime_error& e) {
        std::string why = may(privilege) ? "row-level security" : "permission denied";
        EXPECT_NE(std::string(e.what()).find(why), npos) << statement << "\n" << e.what();
      }
    };
    std::string columns = sql(db.admin_url(),
                              "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) "
                              "FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
                              "AND NOT attisdropped AND attgenerated = ''",
                              {table})[0][0];
    std::string row_of_b = sql(
        db.admin_url(),
        "SELECT to_jsonb(r)::text FROM " + table + " r WHERE r." + column + "::text = $1 LIMIT 1",
        {b})[0][0];
    std::string escaped = std::regex_replace(row_of_b, std::regex("'"), "''");
    expect_refused("INSERT", "INSERT INTO " + table + " (" + columns +
                                 ") OVERRIDING SYSTEM VALUE SELECT " + columns +
                                 " FROM jsonb_populate_record(NULL::" + table + ", '" + escaped +
                                 "'::jsonb)");
    expect_refused("UPDATE", "UPDATE " + table + " SET " + column + " = '" + b + "'");
    if (may("DELETE")) {
      EXPECT_EQ(as_app(db, t.setting, a,
                       "WITH gone AS (DELETE FROM " + table + " WHERE " + column + "::text = '" +
                           b + "' RETURNING 1) SELECT count(*) FROM gone")[0][0],
                "0");
    }
    EXPECT_EQ(count_of(a), rows_a);
    EXPECT_EQ(count_of(b), rows_b);
  }
}

// Partitions (usage_events by month) are left out of the checks above: the application role has
// no rights on any of them, so it reaches their rows only through the parent and its policy.
// Each is still forced under the same policy (RowLevelSecurityLint checks them).
TEST(TenantIsolation, PartitionsAreReachableOnlyThroughTheirParent) {
  testkit::TestDatabase db;
  Owners owners;
  seed(db, owners);
  std::string app_role = sql(db.app_url(), "SELECT current_user")[0][0];
  auto partitions = sql(db.admin_url(),
                        "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                        "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                        "AND c.relispartition AND c.relkind = 'r'");
  ASSERT_GE(partitions.size(), 4u);  // last month to three ahead
  for (const auto& row : partitions) {
    SCOPED_TRACE(row[0]);
    for (const char* privilege : {"SELECT", "INSERT", "UPDATE", "DELETE"}) {
      EXPECT_EQ(sql(db.admin_url(), "SELECT has_table_privilege($1, $2, $3)",
                    {app_role, quoted(row[0]), privilege})[0][0],
                "f")
          << privilege;
    }
    try {
      as_app(db, "app.tenant_id", owners.tenant_a, "SELECT count(*) FROM " + quoted(row[0]));
      ADD_FAILURE() << "the application role read a partition directly";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("permission denied"), npos) << e.what();
    }
  }
  // Through the parent: the tenant's own rows only.
  EXPECT_EQ(as_app(db, "app.tenant_id", owners.tenant_a,
                   "SELECT count(*) FROM usage_events WHERE tenant_id <> '" + owners.tenant_a +
                       "'")[0][0],
            "0");
}

}  // namespace
}  // namespace hsea::db
