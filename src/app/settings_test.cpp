// Settings across the whole application: core's section and every registered module's, read
// the way main reads them (core::load_config, then app::configure).
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "app/app.hpp"
#include "core/config.hpp"
#include "db/db.hpp"
#include "ops/ops.hpp"
#include "runtime/registrar.hpp"

namespace hsea::app {
namespace {

core::EnvLookup env(std::map<std::string, std::string> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

struct Loaded {
  core::Config config;  // the application keeps a reference
  std::optional<runtime::Application> app;
};

// Throws core::ConfigError for a module's bad value, like main's start.
std::unique_ptr<Loaded> load(std::map<std::string, std::string> values) {
  core::EnvLookup lookup = env(std::move(values));
  auto loaded = std::make_unique<Loaded>();
  auto config = core::load_config(lookup, false);
  if (!config) throw core::ConfigError(config.error());
  loaded->config = std::move(*config);
  loaded->app.emplace(configure(loaded->config, lookup));
  return loaded;
}

std::string error_of(std::map<std::string, std::string> values) {
  try {
    load(std::move(values));
  } catch (const core::ConfigError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(Config, EveryVariableOfEverySectionRefusesABadValueNamingIt) {
  // Free text (a product name, a footer) has no bad value of this shape.
  const std::set<std::string_view> any_text{
      "HSEA_BASE_DOMAIN",         "HSEA_MAIL_PRODUCT_NAME",      "HSEA_MAIL_FOOTER",
      "HSEA_BILLING_SELLER_NAME", "HSEA_BILLING_SELLER_ADDRESS", "HSEA_BILLING_SELLER_TAX_ID"};
  auto settings = load({})->app->settings.settings();
  EXPECT_GT(settings.size(), 30u);
  for (const core::Setting& s : settings) {
    if (any_text.contains(s.name)) continue;
    std::string error = error_of({{std::string(s.name), "-1x"}});
    EXPECT_EQ(error.rfind(std::string(s.name) + ": ", 0), 0u) << s.name << ": " << error;
  }
  EXPECT_EQ(error_of({{"HSEA_DATABASE_URL", "mysql://x"}}),
            "HSEA_DATABASE_URL: must be a postgresql:// URL");
  EXPECT_EQ(error_of({{"HSEA_DB_POOL_SIZE", "0"}}),
            "HSEA_DB_POOL_SIZE: must be an integer from 1 to 1000");
  EXPECT_EQ(error_of({{"HSEA_TENANT_DELETION_GRACE_DAYS", "3651"}}),
            "HSEA_TENANT_DELETION_GRACE_DAYS: must be an integer from 0 to 3650");
}

TEST(Config, EveryVariableBelongsToOneSection) {
  std::set<std::string_view> seen;
  for (const core::Setting& s : load({})->app->settings.settings()) {
    EXPECT_TRUE(seen.insert(s.name).second) << s.name << " is declared twice";
    EXPECT_TRUE(s.name.starts_with("HSEA_")) << s.name;
  }
}

TEST(Config, MaxConnectionsDefaultFollowsTheDatabasePoolSize) {
  auto derived = load({{"HSEA_THREADS", "3"}, {"HSEA_DB_POOL_SIZE", "5"}});
  EXPECT_EQ(derived->config.max_connections,
            core::default_max_connections(core::open_file_limit(), 3, 5));
  EXPECT_EQ(derived->app->settings.get<db::Settings>().pool_size, 5);
  auto set = load({{"HSEA_MAX_CONNECTIONS", "500"}, {"HSEA_DB_POOL_SIZE", "5"}});
  EXPECT_EQ(set->config.max_connections, 500);
  EXPECT_NE(set->app->settings.describe().find("HSEA_MAX_CONNECTIONS=500\n"), std::string::npos);
}

TEST(Config, DescribeMasksSecrets) {
  auto loaded = load({{"HSEA_SECRET_KEY", std::string(40, 's')},
                      {"HSEA_DATABASE_URL", "postgresql://app:hunter2@db:5432/hsea"},
                      {"HSEA_DATABASE_ADMIN_URL", "postgresql://owner:swordfish@db:5432/hsea"},
                      {"HSEA_REDIS_URL", "redis://:topsecret@cache:6379"},
                      {"HSEA_METRICS_TOKEN", "scrape-token-0123456789"}});
  std::string text = loaded->app->settings.describe();
  const std::string key(40, 's');
  for (std::string_view secret : {"hunter2", "swordfish", "topsecret", "scrape-token"}) {
    EXPECT_EQ(text.find(secret), std::string::npos) << secret << " printed:\n" << text;
  }
  EXPECT_EQ(text.find(key), std::string::npos) << text;
  EXPECT_NE(text.find("  HSEA_DATABASE_URL=postgresql://app:***@db:5432/hsea\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("  HSEA_REDIS_URL=redis://:***@cache:6379\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  HSEA_SECRET_KEY=***\n"), std::string::npos) << text;
  for (const core::Setting& s : loaded->app->settings.settings()) {
    EXPECT_NE(text.find("  " + std::string(s.name) + "="), std::string::npos) << s.name;
  }
}

TEST(Config, MetricsTokenIsASecret) {
  auto loaded = load({{"HSEA_METRICS_TOKEN", "scrape-token-0123456789"}});
  EXPECT_EQ(loaded->app->settings.get<ops::Settings>().metrics_token, "scrape-token-0123456789");
  std::string text = loaded->app->settings.describe();
  EXPECT_EQ(text.find("scrape-token"), std::string::npos);
  EXPECT_NE(text.find("HSEA_METRICS_TOKEN=***"), std::string::npos);
  EXPECT_NE(error_of({{"HSEA_METRICS_TOKEN", "short"}}).find("HSEA_METRICS_TOKEN"),
            std::string::npos);
  EXPECT_TRUE(core::load_config(
                  env({{"HSEA_ENV", "production"}, {"HSEA_SECRET_KEY", std::string(32, 'k')}}))
                  ->production());
}

TEST(Config, ReadmeListsEverySetting) {
  std::ifstream in(std::string(HSEA_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md missing";
  std::stringstream ss;
  ss << in.rdbuf();
  auto settings = load({})->app->settings.settings();
  EXPECT_GT(settings.size(), 30u);  // core's and every module's
  for (const core::Setting& s : settings) {
    EXPECT_NE(ss.str().find("`" + std::string(s.name) + "`"), std::string::npos)
        << s.name << " is not documented in README.md";
  }
}

}  // namespace
}  // namespace hsea::app
