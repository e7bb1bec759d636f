#pragma once
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>
#include <string_view>
// Tenants and memberships: GET/POST /api/tenants, GET/PATCH/DELETE /api/tenant,
// POST /api/tenant/leave and /restore, GET /api/members, PATCH/DELETE /api/members/{user_id},
// invitations (/api/invitations*), the way a user joins a tenant, and GET/PATCH
// /api/tenant/settings.

namespace hsea::runtime {
class Registrar;
}
namespace hsea::db {
class Pool;
}

namespace hsea::tenancy {

// The tenancy module's settings section.
struct Settings {
  int deletion_grace_days = 30;    // a deleted tenant stays suspended this long
  int invitation_expiry_days = 7;  // an invitation's token works this long
};

void Register(runtime::Registrar& registrar);
// GET/PATCH /api/tenant/settings (settings_routes.cpp), and the CORS step's Host rule.
void register_settings_routes(runtime::Registrar& registrar);

// Removes tenants whose deletion grace period is over, with all their data; returns how many.
// The server runs it daily; `hsea tenants purge` runs it once (blocking).
boost::asio::awaitable<std::int64_t> purge_due_tenants(db::Pool& db);
long purge_due_tenants(const std::string& database_url);

}  // namespace hsea::tenancy
