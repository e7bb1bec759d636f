#include "db/migrations.hpp"

#include "core/crypto.hpp"
#include "db/blocking.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <boost/url/parse.hpp>

#include <memory>
#include <stdexcept>

namespace hsea::db {
namespace {

void ensure_app_role(BlockingConnection& conn, const std::string& app_url, MigrateReport& report) {
  auto url = boost::urls::parse_uri(app_url);
  if (!url || url->encoded_user().empty()) {
    throw std::runtime_error("HSEA_DATABASE_URL must name the application user");
  }
  std::string user = url->user();
  if (user == "hsea_app_privileges") {
    throw std::runtime_error("HSEA_DATABASE_URL must not use the group role hsea_app_privileges");
  }
  std::string password = url->password();
  // Cross-boundary look-ups are SECURITY DEFINER functions running as this role, and every
  // table forces row-level security: the owner must bypass it, or they would see nothing.
  auto self =
      conn.exec("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user");
  if (self.get(0, 0) != "t") {
    throw std::runtime_error(
        "HSEA_DATABASE_ADMIN_URL must name a superuser or a BYPASSRLS role (the schema owner)");
  }
  // The group role every migration grants to; the login role only inherits from it. Roles
  // belong to the whole cluster while the advisory lock covers one database, so a migration of
  // another database may create it at the same moment: that is not an error.
  conn.exec_script(
      "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'hsea_app_privileges') "
      "THEN CREATE ROLE hsea_app_privileges NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
      "NOCREATEROLE; END IF; EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; "
      "END $$");
  auto found = conn.exec("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", {user});
  std::string ident = conn.quote_identifier(user);
  if (found.empty()) {
    conn.exec_script(
        fmt::format("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB "
                    "NOCREATEROLE INHERIT PASSWORD {}",
                    ident, conn.quote_literal(password)));
    report.role_created = true;
  } else if (found.get(0, 0) == "t" || found.get(0, 1) == "t") {
    throw std::runtime_error(fmt::format(
        "the application role {} is a superuser or bypasses row-level security; HSEA refuses "
        "to serve through it",
        user));
  }
  conn.exec_script(fmt::format("GRANT hsea_app_privileges TO {}", ident));
  auto db = conn.exec("SELECT current_database()");
  std::string db_ident = conn.quote_identifier(db.text(0, "current_database"));
  conn.exec_script(fmt::format("GRANT CONNECT ON DATABASE {} TO hsea_app_privileges", db_ident));
  conn.exec_script("GRANT USAGE ON SCHEMA public TO hsea_app_privileges");
}

constexpr const char* kLintTables = R"sql(
SELECT c.relname,
       c.relrowsecurity,
       c.relforcerowsecurity,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
       (SELECT count(*) FROM pg_policy p
         WHERE p.polrelid = c.oid
           AND (p.polcmd <> '*' OR NOT p.polpermissive OR p.polqual IS NULL
                OR p.polwithcheck IS NULL
                OR pg_get_expr(p.polqual, p.polrelid) NOT LIKE '%app.tenant_id%'
                OR pg_get_expr(p.polwithcheck, p.polrelid) NOT LIKE '%app.tenant_id%'))
         AS bad_policies,
       EXISTS (SELECT 1 FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = c.oid AND a.attname = 'tenant_id') AS tenant_indexed,
       c.relowner IN (SELECT oid FROM pg_roles WHERE rolname = 'hsea_app_privileges'
                       UNION SELECT m.member FROM pg_auth_members m
                        JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = 'hsea_app_privileges')
         AS owned_by_app
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
   AND EXISTS (SELECT 1 FROM pg_attribute a
                WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
 ORDER BY c.relname)sql";

std::vector<std::string> lint(BlockingConnection& conn) {
  std::vector<std::string> problems;
  auto res = conn.exec(kLintTables);
  for (int r = 0; r < res.rows(); ++r) {
    std::string table(res.get(r, 0));
    auto flag = [&](int col) { return res.get(r, col) == "t"; };
    if (!flag(1)) problems.push_back(table + ": row-level security is not enabled");
    if (!flag(2)) problems.push_back(table + ": row-level security is not forced");
    if (res.get(r, 3) == "0") {
      problems.push_back(table + ": has no policy");
    }
    if (res.get(r, 4) != "0") {
      problems.push_back(table +
                         ": a policy is not FOR ALL with USING and WITH CHECK on app.tenant_id");
    }
    if (!flag(5)) problems.push_back(table + ": tenant_id does not lead any index");
    if (flag(6)) problems.push_back(table + ": is owned by the application role");
  }
  return problems;
}

}  // namespace

std::vector<std::string> lint_row_level_security(const std::string& admin_url) {
  BlockingConnection conn(admin_url, "row-level-security lint");
  return lint(conn);
}

MigrateReport migrate(const std::string& admin_url, const std::string& app_url,
                      const std::vector<Migration>& migrations) {
  BlockingConnection conn(admin_url, "HSEA_DATABASE_ADMIN_URL");
  conn.exec_script("SET client_min_messages = warning");
  MigrateReport report;
  // One runner at a time, across every node that starts with `hsea migrate`.
  conn.exec("SELECT pg_advisory_lock(7283410001)");
  try {
    ensure_app_role(conn, app_url, report);
    conn.exec_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " name text PRIMARY KEY, checksum text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())");
    for (const Migration& m : migrations) {
      std::string checksum = core::sha256_hex(m.sql);
      auto row = conn.exec("SELECT checksum FROM schema_migrations WHERE name = $1",
                           {std::string(m.name)});
      if (!row.empty()) {
        if (checksum != row.get(0, 0)) {
          throw std::runtime_error(fmt::format(
              "migration {} was changed after it was applied (checksum {} recorded, {} now); "
              "add a new migration instead",
              m.name, row.get(0, 0), checksum));
        }
        continue;
      }
      conn.exec_script("BEGIN");
      try {
        conn.exec_script(m.sql);
        conn.exec("INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
                  {std::string(m.name), checksum});
        conn.exec_script("COMMIT");
      } catch (const std::exception& e) {
        conn.exec_script("ROLLBACK");
        throw std::runtime_error(fmt::format("migration {} failed: {}", m.name, e.what()));
      }
      report.applied.emplace_back(m.name);
    }
    if (auto problems = lint(conn); !problems.empty()) {
      std::string message = "row-level-security rules broken:";
      for (const auto& p : problems) message += "\n  " + p;
      throw std::runtime_error(message);
    }
  } catch (...) {
    try {
      conn.exec("SELECT pg_advisory_unlock(7283410001)");
    } catch (const std::exception&) {
    }
    throw;
  }
  conn.exec("SELECT pg_advisory_unlock(7283410001)");
  return report;
}

}  // namespace hsea::db
