#pragma once
// Invitations (HSEA-017), internal to the tenancy module: the way a user joins a tenant.
namespace hsea::runtime {
class Registrar;
}

namespace hsea::tenancy {

// POST/GET /api/invitations, DELETE /api/invitations/{id}, POST /api/invitations/{id}/resend,
// POST /api/invitations/accept; the event type member.invited. `expiry_days`: how long a
// token stays valid; `public_url`: where the accept page lives.
void register_invitation_routes(runtime::Registrar& registrar, int expiry_days);

}  // namespace hsea::tenancy
