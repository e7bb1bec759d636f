#pragma once
// The security module's middleware (internal to the module).
#include <optional>

#include "http/middleware.hpp"

namespace hsea::security {

std::optional<http::Response> validate_body(http::RequestContext& ctx);
boost::asio::awaitable<http::Response> record_access(http::RequestContext& ctx, http::Next next);
bool declares_access_event(const http::RequestContext& ctx);  // when record_access applies
void security_headers(http::RequestContext& ctx, http::Response& response);

}  // namespace hsea::security
