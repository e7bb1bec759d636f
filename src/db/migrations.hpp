#pragma once
// Schema migrations: migrations/NNNN_name.sql, compiled into the binary, applied in order,
// once each, under an advisory lock, each recorded with its SHA-256. A changed applied file
// is an error naming it.
#include <string>
#include <string_view>
#include <vector>

namespace hsea::db {

struct Migration {
  std::string_view name;  // "0001_foundation.sql"
  std::string_view sql;
};

const std::vector<Migration>& embedded_migrations();

struct MigrateReport {
  std::vector<std::string> applied;  // names applied by this run
  bool role_created = false;
};

// Runs as the owner role (admin_url). Creates the application role from app_url's user and
// password if missing (NOSUPERUSER, NOBYPASSRLS, owning nothing, member of hsea_app_privileges) and
// applies pending migrations. Throws std::runtime_error with a clear message on failure.
MigrateReport migrate(const std::string& admin_url, const std::string& app_url,
                      const std::vector<Migration>& migrations);

// Checks every table in schema public that has a tenant_id column: row-level security enabled
// and forced, at least one policy, every policy FOR ALL with USING and WITH CHECK on
// app.tenant_id, tenant_id leading an index, and not owned by the application role. Returns
// one message per violation; `migrate` refuses to finish while there is any.
std::vector<std::string> lint_row_level_security(const std::string& admin_url);

}  // namespace hsea::db
