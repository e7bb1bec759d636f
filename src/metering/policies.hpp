#pragma once
// The metering module's route policies (declarations only; any module may use them).

namespace hsea::metering {

// A route policy: the route is neither counted nor refused for quota. Declared by the routes a
// tenant past its quota must still reach: sign-in and the signed-in user (the web app starts from
// /api/me), its usage, plans, subscription and invoices, paying and upgrading, Stripe's webhooks.
struct Unmetered {};

// A route policy: the route adds stored data. Once the tenant's storage_bytes (as last
// measured) reaches its hard quota, such a route is refused with 429 quota_exceeded; every
// other route (reading, deleting) stays open, so a tenant past its quota can clean up.
struct StoresData {};

}  // namespace hsea::metering
