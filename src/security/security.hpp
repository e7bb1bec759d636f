#pragma once
// Security: response security headers, request-body validation against openapi.yaml's
// schemas, data-access auditing and the audit-log API (GET /api/audit-logs).
#include <string>
#include <vector>

#include "core/error.hpp"
#include "security/policies.hpp"

namespace hsea::runtime {
class Registrar;
}

namespace hsea::security {

// The security module's settings section.
struct Settings {
  int audit_retention_days = 365;
  std::string previous_secret_key;  // read only by `hsea keys rotate-data`
  int pii_key_cache_seconds = 60;   // pii::configure's current_key_cache
};

void Register(runtime::Registrar& registrar);

// The validation errors of `json` against the named schema (empty when valid). Throws
// std::out_of_range for an unknown schema name.
std::vector<core::FieldError> schema_errors(const std::string& schema_name,
                                            const std::string& json);

}  // namespace hsea::security
