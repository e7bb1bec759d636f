#include "core/config.hpp"

#include <gtest/gtest.h>

#include <map>

namespace hsea::core {
namespace {

EnvLookup env(std::map<std::string, std::string> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Config, DefaultsAreSafeForLocalUse) {
  auto config = load_config(env({{"HSEA_ENV", "development"}}));
  ASSERT_TRUE(config.has_value()) << config.error();
  EXPECT_EQ(config->http_host, "127.0.0.1");
  EXPECT_EQ(config->http_port, 8080);
  EXPECT_GE(config->threads, 1);
  EXPECT_EQ(config->max_body_bytes, 1u << 20);
  EXPECT_TRUE(config->development());
  EXPECT_FALSE(config->public_url_is_https());
}

TEST(Config, BadValueNamesTheVariable) {
  auto config = load_config(env({{"HSEA_HTTP_PORT", "not-a-port"}}));
  ASSERT_FALSE(config.has_value());
  EXPECT_NE(config.error().find("HSEA_HTTP_PORT"), std::string::npos) << config.error();

  EXPECT_FALSE(load_config(env({{"HSEA_HTTP_PORT", "70000"}})).has_value());
  EXPECT_FALSE(load_config(env({{"HSEA_THREADS", "0"}})).has_value());
  EXPECT_FALSE(load_config(env({{"HSEA_ACCESS_LOG", "maybe"}})).has_value());
  EXPECT_FALSE(load_config(env({{"HSEA_PUBLIC_URL", "ftp://x"}})).has_value());
  EXPECT_FALSE(load_config(env({{"HSEA_ENV", "staging"}})).has_value());
  EXPECT_FALSE(load_config(env({{"HSEA_LOG_LEVEL", "loud"}})).has_value());
}

TEST(Config, SecretKeyRequiredOutsideDevelopment) {
  auto missing = load_config(env({{"HSEA_ENV", "production"}}));
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().find("HSEA_SECRET_KEY"), std::string::npos);

  auto short_key = load_config(env({{"HSEA_ENV", "production"}, {"HSEA_SECRET_KEY", "short"}}));
  ASSERT_FALSE(short_key.has_value());
  EXPECT_NE(short_key.error().find("32 bytes"), std::string::npos);

  auto ok = load_config(env({{"HSEA_ENV", "production"},
                             {"HSEA_SECRET_KEY", std::string(32, 'k')},
                             {"HSEA_PUBLIC_URL", "https://app.example.com/"}}));
  ASSERT_TRUE(ok.has_value()) << ok.error();
  EXPECT_TRUE(ok->public_url_is_https());
  EXPECT_EQ(ok->public_url, "https://app.example.com");
}

TEST(Config, MaxConnectionsFollowsTheOpenFileLimit) {
  EXPECT_EQ(default_max_connections(1024, 2, 4), 1024 - 64 - 2 * 6);
  EXPECT_EQ(default_max_connections(1 << 20, 8, 4), 10000);
  EXPECT_EQ(default_max_connections(64, 2, 4), 16);
  EXPECT_EQ(default_max_connections(0, 1, 1), 16);

  auto set = load_config(env({{"HSEA_MAX_CONNECTIONS", "500"}}), false);
  ASSERT_TRUE(set.has_value()) << set.error();
  EXPECT_EQ(set->max_connections, 500);
  EXPECT_NE(describe(*set).find("HSEA_MAX_CONNECTIONS=500"), std::string::npos);

  // The derived default needs the database module's pool size: src/app/settings_test.cpp.

  auto zero = load_config(env({{"HSEA_MAX_CONNECTIONS", "0"}}), false);
  ASSERT_FALSE(zero.has_value());
  EXPECT_NE(zero.error().find("HSEA_MAX_CONNECTIONS"), std::string::npos);
}

TEST(Config, PublicDevelopmentSecretNeedsExplicitDevelopmentOnLoopback) {
  // HSEA_ENV defaults to development, but only an explicit one may go without a secret.
  auto unset = load_config(env({}));
  ASSERT_FALSE(unset.has_value());
  EXPECT_EQ(unset.error().rfind("HSEA_SECRET_KEY: ", 0), 0u) << unset.error();
  EXPECT_TRUE(load_config(env({}), false).has_value());  // migrate, audit prune: no secret used

  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"}) {
    auto ok = load_config(env({{"HSEA_ENV", "development"}, {"HSEA_HTTP_HOST", host}}));
    EXPECT_TRUE(ok.has_value()) << host << ": " << ok.error();
  }
  for (const char* host : {"0.0.0.0", "::", "192.0.2.10", "::ffff:0.0.0.0", "128.0.0.1"}) {
    auto refused = load_config(env({{"HSEA_ENV", "development"}, {"HSEA_HTTP_HOST", host}}));
    ASSERT_FALSE(refused.has_value()) << host;
    EXPECT_NE(refused.error().find("HSEA_SECRET_KEY"), std::string::npos) << refused.error();
  }
  for (const char* other : {"test", "production"}) {
    EXPECT_FALSE(load_config(env({{"HSEA_ENV", other}})).has_value()) << other;
  }
  // With a secret, any environment and address will do.
  auto keyed =
      load_config(env({{"HSEA_HTTP_HOST", "0.0.0.0"}, {"HSEA_SECRET_KEY", std::string(32, 'k')}}));
  EXPECT_TRUE(keyed.has_value()) << keyed.error();

  EXPECT_TRUE(is_loopback_address("localhost"));
  EXPECT_FALSE(is_loopback_address("example.com"));
}

TEST(Config, MaskUrlPassword) {
  EXPECT_EQ(mask_url_password("postgresql://u:p@h/db"), "postgresql://u:***@h/db");
  EXPECT_EQ(mask_url_password("postgresql://u@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(mask_url_password("redis://h:6379"), "redis://h:6379");
  EXPECT_EQ(mask_url_password("no url"), "no url");
}

}  // namespace
}  // namespace hsea::core
