#pragma once
// JSON bodies for handlers: parse with a clear 400/415, answer with a serialized value.
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "http/context.hpp"

namespace hsea::http {

// The request body as a JSON object, parsed once per request (kept in the request's slots, so
// body validation and the handler share one parse); 415 when it is not JSON, 400 when it does
// not parse or is not an object, 422 naming the fields when a string or member name anywhere in
// it holds U+0000 (every body is refused whole rather than cut at the NUL later on).
const boost::json::object& json_body(RequestContext& ctx);

Response json_response(int status, const boost::json::value& value);

// Field access with 422 problems naming the field.
std::string required_string(const boost::json::object& body, std::string_view field);
std::optional<std::string> optional_string(const boost::json::object& body, std::string_view field);

}  // namespace hsea::http
