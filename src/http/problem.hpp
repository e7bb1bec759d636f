#pragma once
// RFC 9457 application/problem+json responses.
#include <string_view>

#include "core/error.hpp"
#include "http/message.hpp"

namespace hsea::http {

Response problem(const core::ApiError& error, std::string_view request_id);
Response problem(core::ErrorCode code, std::string_view detail, std::string_view request_id);

}  // namespace hsea::http
