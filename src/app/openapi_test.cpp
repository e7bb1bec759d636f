// openapi/openapi.yaml must describe exactly the routes the server declares.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <set>

#include "app/app.hpp"
#include "core/config.hpp"
#include "runtime/registrar.hpp"

namespace hsea::app {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

const core::Config& test_config() {
  static const core::Config kConfig =
      core::load_config([](std::string_view) { return std::nullopt; }, false).value();
  return kConfig;
}

}  // namespace
runtime::Application declared_application() {
  runtime::Registrar registrar(test_config());
  register_modules(registrar);
  return std::move(registrar).finish();
}
namespace {

TEST(OpenApi, DescribesEveryDeclaredRouteAndNothingElse) {
  YAML::Node spec = YAML::LoadFile(std::string(HSEA_SOURCE_DIR) + "/openapi/openapi.yaml");
  std::set<std::string> documented;
  for (const auto& path : spec["paths"]) {
    for (const auto& op : path.second) {
      std::string method = op.first.as<std::string>();
      if (method == "parameters" || method == "summary" || method == "description") continue;
      documented.insert(method + " " + path.first.as<std::string>());
    }
  }
  runtime::Application app = declared_application();
  std::set<std::string> declared;
  for (const auto& route : app.router.routes()) {
    declared.insert(lower(http::method_name(route->method)) + " " + route->path);
  }
  for (const auto& d : declared) EXPECT_TRUE(documented.contains(d)) << d << " is undocumented";
  for (const auto& d : documented) EXPECT_TRUE(declared.contains(d)) << d << " is not served";
}

}  // namespace
}  // namespace hsea::app

#include "security/security.hpp"

namespace hsea::app {
runtime::Application declared_application();
namespace {

TEST(OpenApi, EveryBodySchemaARouteNamesExists) {
  runtime::Application app = declared_application();
  for (const auto& route : app.router.routes()) {
    const security::Body* body = route->policy<security::Body>();
    if (body == nullptr) continue;
    EXPECT_NO_THROW(security::schema_errors(body->schema, "{}"))
        << route->path << " names " << body->schema;
  }
}

}  // namespace
}  // namespace hsea::app

namespace hsea::app {
namespace {

// Every body is validated before its handler runs: a route that takes one names the schema the
// contract documents for it, and a route that names a schema documents that body.
TEST(OpenApi, EveryDocumentedRequestBodyIsTheRoutesBodySchema) {
  YAML::Node spec = YAML::LoadFile(std::string(HSEA_SOURCE_DIR) + "/openapi/openapi.yaml");
  std::map<std::string, std::string> documented;  // "post /api/..." -> schema name
  for (const auto& path : spec["paths"]) {
    for (const auto& op : path.second) {
      if (!op.second.IsMap() || !op.second["requestBody"]) continue;
      std::string key = op.first.as<std::string>() + " " + path.first.as<std::string>();
      YAML::Node content = op.second["requestBody"]["content"];
      for (const auto& type : content) {
        EXPECT_EQ(type.first.as<std::string>(), "application/json") << key;
      }
      std::string ref = content["application/json"]["schema"]["$ref"].as<std::string>("");
      EXPECT_TRUE(ref.starts_with("#/components/schemas/")) << key << " has no schema $ref";
      documented[key] = ref.substr(ref.rfind('/') + 1);
    }
  }
  runtime::Application app = declared_application();
  for (const auto& route : app.router.routes()) {
    std::string key = lower(http::method_name(route->method)) + " " + route->path;
    const security::Body* body = route->policy<security::Body>();
    auto it = documented.find(key);
    if (it == documented.end()) {
      EXPECT_EQ(body, nullptr) << key << " names a body that is undocumented";
    } else {
      ASSERT_NE(body, nullptr) << key << " takes a body but declares no schema";
      EXPECT_EQ(body->schema, it->second) << key;
    }
  }
}

}  // namespace
}  // namespace hsea::app
