// valijson inlines std::string code that g++ 12 misreads under -Wrestrict.
#pragma GCC diagnostic ignored "-Wrestrict"
// Throw (not abort) on a schema valijson cannot compile.
#define VALIJSON_USE_EXCEPTIONS 1
#include <yaml-cpp/yaml.h>
#include <valijson/adapters/boost_json_adapter.hpp>
#include <valijson/adapters/yaml_cpp_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include <boost/json/parse.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "core/embedded.hpp"
#include "http/json.hpp"
#include "security/security.hpp"
#include "security/steps.hpp"

namespace hsea::security {
namespace {

// A copy of `node` in which every `format` applies to strings only, as JSON Schema means it:
// `format: F` becomes `allOf: [{if: {type: string}, then: {format: F}}]`. valijson applies a
// bare `format` to a value of any type and throws on an array or object (a 500 for a body that
// merely has a wrong type). A member *named* "format" under properties stays as it is.
YAML::Node formats_for_strings_only(const YAML::Node& node, bool names_properties = false) {
  if (node.IsSequence()) {
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& item : node) out.push_back(formats_for_strings_only(item));
    return out;
  }
  if (!node.IsMap()) return YAML::Clone(node);
  YAML::Node out(YAML::NodeType::Map);
  std::optional<std::string> format;
  for (const auto& entry : node) {
    std::string key = entry.first.as<std::string>();
    if (key == "format" && !names_properties) {
      format = entry.second.as<std::string>();
      continue;
    }
    bool names = !names_properties && (key == "properties" || key == "patternProperties");
    out[key] = formats_for_strings_only(entry.second, names);
  }
  if (format) {
    YAML::Node conditional(YAML::NodeType::Map);
    conditional["if"]["type"] = "string";
    conditional["then"]["format"] = *format;
    if (!out["allOf"]) out["allOf"] = YAML::Node(YAML::NodeType::Sequence);
    out["allOf"].push_back(conditional);
  }
  return out;
}

// Every request schema of the contract, compiled once. They are self-contained (no $ref), so
// each compiles on its own; a test checks that every route's body_schema exists.
class Schemas {
 public:
  Schemas() {
    YAML::Node spec = YAML::Load(std::string(embedded::openapi_yaml()));
    for (const auto& entry : spec["components"]["schemas"]) {
      // Request bodies are the *Request schemas; response schemas use $ref and are not needed.
      if (!entry.first.as<std::string>().ends_with("Request")) continue;
      auto schema = std::make_unique<valijson::Schema>();
      valijson::SchemaParser parser;
      YAML::Node source = formats_for_strings_only(entry.second);
      valijson::adapters::YamlCppAdapter adapter(source);
      parser.populateSchema(adapter, *schema);
      schemas_.emplace(entry.first.as<std::string>(), std::move(schema));
    }
  }
  const valijson::Schema& get(const std::string& name) const { return *schemas_.at(name); }

 private:
  std::map<std::string, std::unique_ptr<valijson::Schema>> schemas_;
};

const Schemas& schemas() {
  static const Schemas kSchemas;
  return kSchemas;
}

// valijson's context is {"<root>", "[email]", "[0]"}; clients get a JSON pointer.
std::string pointer(const std::vector<std::string>& context, const std::string& description) {
  std::string out;
  for (const auto& part : context) {
    if (part.size() >= 2 && part.front() == '[' && part.back() == ']') {
      std::string key = part.substr(1, part.size() - 2);
      if (key.size() >= 2 && key.front() == '"' && key.back() == '"') {
        key = key.substr(1, key.size() - 2);
      }
      out += "/" + key;
    }
  }
  // "Missing required property 'email'." names the field itself.
  auto quote = description.find('\'');
  if (description.starts_with("Missing required property") && quote != std::string::npos) {
    auto end = description.find('\'', quote + 1);
    if (end != std::string::npos) out += "/" + description.substr(quote + 1, end - quote - 1);
  }
  return out.empty() ? "/" : out;
}

}  // namespace

namespace {
std::vector<core::FieldError> errors_of(const std::string& schema_name,
                                        const boost::json::value& value) {
  const valijson::Schema& schema = schemas().get(schema_name);
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::BoostJsonAdapter target(value);
  if (validator.validate(schema, target, &results)) return {};
  std::vector<core::FieldError> errors;
  valijson::ValidationResults::Error error;
  while (results.popError(error)) {
    // Nested "failed to validate against child schema" lines repeat what the leaves say.
    if (error.description.find("child schema") != std::string::npos) continue;
    errors.push_back({pointer(error.context, error.description), error.description});
  }
  if (errors.empty()) errors.push_back({"/", "does not match the schema"});
  return errors;
}
}  // namespace

std::vector<core::FieldError> schema_errors(const std::string& schema_name,
                                            const std::string& json) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(json, ec);
  if (ec) {
    schemas().get(schema_name);  // an unknown schema is still a programming error
    return {{"/", "is not valid JSON"}};
  }
  return errors_of(schema_name, value);
}

std::optional<http::Response> validate_body(http::RequestContext& ctx) {
  const Body* body_policy = ctx.policy<Body>();
  if (body_policy == nullptr) return std::nullopt;
  const std::string& schema = body_policy->schema;
  boost::json::value body = http::json_body(ctx);  // 415 / 400 first
  auto errors = errors_of(schema, body);
  if (!errors.empty()) {
    throw core::ApiError(core::ErrorCode::kValidationFailed,
                         "The request body does not match the " + schema + " schema.",
                         std::move(errors));
  }
  return std::nullopt;
}

}  // namespace hsea::security
