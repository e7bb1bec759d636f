#pragma once
// The metering module's own pieces (internal).
namespace hsea::runtime {
class Registrar;
}

namespace hsea::metering {

// The periodic report of metered usage to Stripe (stripe_usage.cpp).
void register_stripe_usage(runtime::Registrar& registrar);

}  // namespace hsea::metering
