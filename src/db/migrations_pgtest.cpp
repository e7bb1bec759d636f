#include "db/migrations.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "testkit/testkit.hpp"

namespace hsea::db {
namespace {

using testkit::sql;

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

// The database itself keeps an owner in every tenant (migration 0003), whoever runs the SQL.
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

}  // namespace
}  // namespace hsea::db
