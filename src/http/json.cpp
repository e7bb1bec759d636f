#include "http/json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include "core/error.hpp"

namespace hsea::http {

namespace {
struct ParsedBody {
  boost::json::object object;
};
}  // namespace

const boost::json::object& json_body(RequestContext& ctx) {
  if (const ParsedBody* parsed = ctx.slots.find<ParsedBody>()) return parsed->object;
  std::string_view type = ctx.request.header("content-type");
  if (!type.starts_with("application/json") && !type.starts_with("application/merge-patch+json")) {
    throw core::ApiError(core::ErrorCode::kUnsupportedMediaType,
                         "Send the body as application/json.");
  }
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(ctx.request.body, ec);
  if (ec) throw core::ApiError(core::ErrorCode::kBadRequest, "The body is not valid JSON.");
  if (!value.is_object()) {
    throw core::ApiError(core::ErrorCode::kBadRequest, "The body must be a JSON object.");
  }
  return ctx.slots.emplace<ParsedBody>(std::move(value.as_object())).object;
}

Response json_response(int status, const boost::json::value& value) {
  return Response::json(status, boost::json::serialize(value));
}

std::string required_string(const boost::json::object& body, std::string_view field) {
  auto v = optional_string(body, field);
  if (!v) {
    throw core::ApiError(core::ErrorCode::kValidationFailed, "A required field is missing.",
                         {{"/" + std::string(field), "is required"}});
  }
  return *v;
}

std::optional<std::string> optional_string(const boost::json::object& body,
                                           std::string_view field) {
  auto it = body.find(field);
  if (it == body.end() || it->value().is_null()) return std::nullopt;
  if (!it->value().is_string()) {
    throw core::ApiError(core::ErrorCode::kValidationFailed, "A field has the wrong type.",
                         {{"/" + std::string(field), "must be a string"}});
  }
  return std::string(it->value().as_string());
}

}  // namespace hsea::http
