#pragma once
// Tenants and memberships: GET /api/tenants, GET/PATCH/DELETE /api/tenant,
// GET /api/members, PATCH/DELETE /api/members/{user_id}.

namespace hsea::app {
struct App;
}

namespace hsea::tenancy {

void Register(app::App& app);

}  // namespace hsea::tenancy
