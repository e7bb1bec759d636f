#pragma once
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <string>
#include <string_view>
// Tenants and memberships: GET /api/tenants, GET/PATCH/DELETE /api/tenant,
// GET /api/members, PATCH/DELETE /api/members/{user_id}.

namespace hsea::app {
struct App;
}
namespace hsea::db {
class Pool;
}

namespace hsea::tenancy {

void Register(app::App& app);

// Slugs no tenant may have: names of the service's own hosts and of common infrastructure
// (www, api, admin, mail, status, docs, ...). A tenant's slug is its subdomain of
// HSEA_BASE_DOMAIN, so such a tenant could pose as the operator (HSEA finding 14). Sign-up
// suffixes them; PATCH /api/tenant refuses them (422).
bool is_reserved_slug(std::string_view slug);

// Removes tenants whose deletion grace period is over, with all their data; returns how many.
// The server runs it daily; `hsea tenants purge` runs it once (blocking).
boost::asio::awaitable<std::int64_t> purge_due_tenants(db::Pool& db);
long purge_due_tenants(const std::string& database_url);

}  // namespace hsea::tenancy
