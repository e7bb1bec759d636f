// openapi/openapi.yaml must describe exactly the routes the server declares.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <set>

#include "app/app.hpp"

namespace hsea::app {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

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
  App app;
  register_modules(app);
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
namespace {

TEST(OpenApi, EveryBodySchemaARouteNamesExists) {
  App app;
  register_modules(app);
  for (const auto& route : app.router.routes()) {
    if (route->needs.body_schema.empty()) continue;
    EXPECT_NO_THROW(security::schema_errors(route->needs.body_schema, "{}"))
        << route->path << " names " << route->needs.body_schema;
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
  App app;
  register_modules(app);
  for (const auto& route : app.router.routes()) {
    std::string key = lower(http::method_name(route->method)) + " " + route->path;
    auto it = documented.find(key);
    if (it == documented.end()) {
      EXPECT_TRUE(route->needs.body_schema.empty()) << key << " names a body that is undocumented";
    } else {
      EXPECT_EQ(route->needs.body_schema, it->second) << key;
    }
  }
}

}  // namespace
}  // namespace hsea::app
