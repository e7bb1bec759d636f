#pragma once
// Request-body validation against openapi.yaml's schemas, and the audit-log API.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <vector>

#include "core/error.hpp"
#include "http/middleware.hpp"

namespace hsea::app {
struct App;
}

namespace hsea::security {

void Register(app::App& app);  // GET /api/audit-logs

// Validates the JSON body of routes that name a body_schema (a schema under
// components.schemas of the embedded openapi.yaml): 415 / 400 / 422 with errors[].
boost::asio::awaitable<http::Response> validate_body(http::RequestContext& ctx, http::Next next);

// HSEA-046 data-access logging: after a successful request to a route that names an
// access_event (reads of members' personal data and of API keys), records who read what, with
// the path and query as metadata. Reading the audit log itself is not recorded there: it would
// change the log under the reader's cursor; the access log line keeps those reads.
boost::asio::awaitable<http::Response> record_access(http::RequestContext& ctx, http::Next next);

// The validation errors of `json` against the named schema (empty when valid). Throws
// std::out_of_range for an unknown schema name.
std::vector<core::FieldError> schema_errors(const std::string& schema_name,
                                            const std::string& json);

}  // namespace hsea::security
