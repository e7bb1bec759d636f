#include "http/json.hpp"

#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cctype>
#include <stdexcept>

#include "core/error.hpp"
#include "security/policies.hpp"

namespace hsea::http {

namespace {

constexpr std::size_t kMaxNulErrors = 20;

// RFC 6901: "~" and "/" inside a member name are written "~0" and "~1".
void append_pointer_token(std::string& pointer, std::string_view token) {
  pointer.push_back('/');
  for (char c : token) {
    if (c == '~') {
      pointer += "~0";
    } else if (c == '/') {
      pointer += "~1";
    } else {
      pointer.push_back(c);
    }
  }
}

// Adds an error for every string and member name under `value` that holds U+0000. PostgreSQL
// cannot store NUL in text, and libpq would cut the value there, so the value a check saw would
// not be the value a query used: refuse, never truncate.
void find_nul(const boost::json::value& value, std::string& pointer,
              std::vector<core::FieldError>& errors) {
  constexpr std::string_view kMessage = "must not contain NUL characters (U+0000)";
  if (errors.size() >= kMaxNulErrors) return;
  if (value.is_string()) {
    if (value.get_string().find('\0') != boost::json::string::npos) {
      errors.push_back({pointer.empty() ? "/" : pointer, std::string(kMessage)});
    }
  } else if (value.is_array()) {
    const boost::json::array& items = value.get_array();
    for (std::size_t i = 0; i < items.size(); ++i) {
      std::size_t size = pointer.size();
      append_pointer_token(pointer, std::to_string(i));
      find_nul(items[i], pointer, errors);
      pointer.resize(size);
    }
  } else if (value.is_object()) {
    for (const auto& [key, member] : value.get_object()) {
      std::size_t size = pointer.size();
      append_pointer_token(pointer, key);
      if (key.find('\0') != std::string_view::npos && errors.size() < kMaxNulErrors) {
        errors.push_back({pointer, "member names " + std::string(kMessage)});
      }
      find_nul(member, pointer, errors);
      pointer.resize(size);
    }
  }
}

std::string lower_trimmed(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  std::string out(v);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Whether a Content-Type names JSON: the media type exactly (any case), with any parameters,
// except a charset other than UTF-8 (JSON text is UTF-8, RFC 8259).
bool is_json_content_type(std::string_view value) {
  std::size_t semi = value.find(';');
  std::string type = lower_trimmed(value.substr(0, semi));
  if (type != "application/json" && type != "application/merge-patch+json") return false;
  while (semi != std::string_view::npos) {
    std::size_t next = value.find(';', semi + 1);
    std::string_view parameter = value.substr(semi + 1, next - semi - 1);
    semi = next;
    std::size_t eq = parameter.find('=');
    if (eq == std::string_view::npos) {
      if (lower_trimmed(parameter).empty()) continue;
      return false;
    }
    if (lower_trimmed(parameter.substr(0, eq)) != "charset") continue;
    std::string charset = lower_trimmed(parameter.substr(eq + 1));
    if (charset.size() >= 2 && charset.front() == '"' && charset.back() == '"') {
      charset = charset.substr(1, charset.size() - 2);
    }
    if (charset != "utf-8") return false;
  }
  return true;
}

struct ParsedBody {
  boost::json::object object;
};

}  // namespace

const boost::json::object& json_body(RequestContext& ctx) {
  if (const ParsedBody* parsed = ctx.slots.find<ParsedBody>()) return parsed->object;
  if (const Route* route = ctx.route();
      route != nullptr && route->policy<security::Body>() == nullptr) {
    // Every body is checked against its schema before a handler sees it, so a route that reads
    // one must name the schema (src/app/openapi_test.cpp checks the declarations).
    throw std::logic_error(route->path + " reads a body but declares no security::Body schema");
  }
  if (!is_json_content_type(ctx.request.header("content-type"))) {
    throw core::ApiError(core::ErrorCode::kUnsupportedMediaType,
                         "Send the body as application/json.");
  }
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(ctx.request.body, ec);
  if (ec) throw core::ApiError(core::ErrorCode::kBadRequest, "The body is not valid JSON.");
  if (!value.is_object()) {
    throw core::ApiError(core::ErrorCode::kBadRequest, "The body must be a JSON object.");
  }
  std::vector<core::FieldError> nul;
  std::string pointer;
  find_nul(value, pointer, nul);
  if (!nul.empty()) {
    throw core::ApiError(core::ErrorCode::kValidationFailed,
                         "Text in the body must not contain NUL characters.", std::move(nul));
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
