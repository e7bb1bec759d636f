#pragma once
// Route policy (vocabulary any module may use; billing's entitlements step enforces it): the
// plan feature a route needs. Declaration only, so that declaring a route never depends on
// billing's code.
#include <string>

namespace hsea::billing {

// The tenant's plan must have this feature flag set (plans.features); otherwise 402
// problem+json, code plan_required.
struct Feature {
  std::string name;
};

// A write a tenant suspended for an unpaid invoice may still make (billing's suspension step
// lets it through): paying and changing its subscription, the way out, and the caller's own
// account and session. Every other write of a suspended tenant answers 402 billing_suspended.
struct OpenWhenSuspended {};

}  // namespace hsea::billing
