#pragma once
// Identity: sign-up, sign-in, tokens, sessions, the caller's profile, API keys; and the
// middleware that resolves the tenant (stage tenant), authenticates (identity) and enforces
// each route's identity::Access policy (admission).
#include "identity/access.hpp"

namespace hsea::runtime {
class Registrar;
}

namespace hsea::identity {

// /api/auth/*, /.well-known/jwks.json, /api/me*, /api/api-keys*; the middleware above; the
// signing keys, the sign-in throttle, `hsea keys rotate` and the API-key usage flush.
void Register(runtime::Registrar& registrar);

}  // namespace hsea::identity
