// openapi/openapi.yaml must describe exactly the routes the server declares.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

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
