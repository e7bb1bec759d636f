#pragma once
#include <string_view>

namespace hsea::core {

// Slugs no tenant may have: names of the service's own hosts and of common infrastructure
// (www, api, admin, mail, status, docs, ...). A tenant's slug is its subdomain of
// HSEA_BASE_DOMAIN, so such a tenant could pose as the operator (HSEA finding 14). Sign-up
// suffixes them; PATCH /api/tenant refuses them (422).
bool is_reserved_slug(std::string_view slug);

}  // namespace hsea::core
