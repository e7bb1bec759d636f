#include "core/settings.hpp"

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

struct Sample {
  int count = 3;
  std::uint16_t port = 80;
  bool verbose = false;
  std::string url = "postgresql://app:pw@db/app";
  std::string token;
  std::string home = "http://h";
};

std::optional<std::string> check_token(std::string& v) {
  if (!v.empty() && v.size() < 8) return "must be at least 8 bytes";
  return std::nullopt;
}

std::optional<std::string> check_home(std::string& v) {
  if (!v.starts_with("http://")) return "must be an http:// URL";
  while (v.ends_with('/')) v.pop_back();
  return std::nullopt;
}

const Section<Sample> kSample{
    "sample",
    {int_setting(&Sample::count, "HSEA_T_COUNT", "3", 1, 10, "a count"),
     int_setting(&Sample::port, "HSEA_T_PORT", "80", 0, 65535, "a port"),
     bool_setting(&Sample::verbose, "HSEA_T_VERBOSE", "false", "a flag"),
     string_setting(&Sample::url, "HSEA_T_URL", "postgresql://app:pw@db/app", "a URL", nullptr,
                    Show::kUrl),
     string_setting(&Sample::token, "HSEA_T_TOKEN", "(unset)", "a token", check_token,
                    Show::kSecret),
     string_setting(&Sample::home, "HSEA_T_HOME", "http://h", "a home page", check_home)}};

struct Other {
  int days = 7;
};
const Section<Other> kOther{"other", {int_setting(&Other::days, "HSEA_T_DAYS", "7", 1, 9, "")}};

TEST(Settings, UnsetVariablesKeepTheStructDefaults) {
  auto s = load_section(kSample, env({}));
  ASSERT_TRUE(s.has_value()) << s.error();
  EXPECT_EQ(s->count, 3);
  EXPECT_EQ(s->port, 80);
  EXPECT_FALSE(s->verbose);
  EXPECT_EQ(s->url, "postgresql://app:pw@db/app");
  EXPECT_EQ(s->token, "");
}

TEST(Settings, SetVariablesAreParsedIntoTheirFields) {
  auto s = load_section(kSample, env({{"HSEA_T_COUNT", "10"},
                                      {"HSEA_T_PORT", "65535"},
                                      {"HSEA_T_VERBOSE", "on"},
                                      {"HSEA_T_TOKEN", "0123456789"},
                                      {"HSEA_T_HOME", "http://example.com//"}}));
  ASSERT_TRUE(s.has_value()) << s.error();
  EXPECT_EQ(s->count, 10);
  EXPECT_EQ(s->port, 65535);
  EXPECT_TRUE(s->verbose);
  EXPECT_EQ(s->token, "0123456789");
  EXPECT_EQ(s->home, "http://example.com");  // a check may normalise
}

TEST(Settings, BadValueNamesTheVariableAndTheRule) {
  auto error = [](std::map<std::string, std::string> values) {
    auto s = load_section(kSample, env(std::move(values)));
    return s.has_value() ? std::string("(accepted)") : s.error();
  };
  EXPECT_EQ(error({{"HSEA_T_COUNT", "11"}}), "HSEA_T_COUNT: must be an integer from 1 to 10");
  EXPECT_EQ(error({{"HSEA_T_COUNT", "3x"}}), "HSEA_T_COUNT: must be an integer from 1 to 10");
  EXPECT_EQ(error({{"HSEA_T_COUNT", ""}}), "HSEA_T_COUNT: must be an integer from 1 to 10");
  EXPECT_EQ(error({{"HSEA_T_PORT", "65536"}}), "HSEA_T_PORT: must be an integer from 0 to 65535");
  EXPECT_EQ(error({{"HSEA_T_VERBOSE", "maybe"}}), "HSEA_T_VERBOSE: must be true or false");
  EXPECT_EQ(error({{"HSEA_T_TOKEN", "short"}}), "HSEA_T_TOKEN: must be at least 8 bytes");
  EXPECT_EQ(error({{"HSEA_T_HOME", "ftp://x"}}), "HSEA_T_HOME: must be an http:// URL");
  // Several bad values: the first entry of the section is named.
  EXPECT_EQ(error({{"HSEA_T_HOME", "ftp://x"}, {"HSEA_T_COUNT", "0"}}).rfind("HSEA_T_COUNT: ", 0),
            0u);
}

TEST(Settings, DescribeMasksSecretsAndMarksThem) {
  Sample s;
  s.token = "0123456789";
  std::string text = describe(kSample, s);
  EXPECT_EQ(text,
            "  HSEA_T_COUNT=3\n"
            "  HSEA_T_PORT=80\n"
            "  HSEA_T_VERBOSE=false\n"
            "  HSEA_T_URL=postgresql://app:***@db/app\n"
            "  HSEA_T_TOKEN=***\n"
            "  HSEA_T_HOME=http://h\n");
  s.token.clear();
  s.url.clear();
  text = describe(kSample, s);
  EXPECT_NE(text.find("HSEA_T_TOKEN=(unset)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("HSEA_T_URL=(unset)\n"), std::string::npos) << text;

  std::map<std::string_view, bool> secret;
  for (const auto& e : kSample.entries) secret[e.setting.name] = e.setting.secret;
  EXPECT_TRUE(secret["HSEA_T_URL"]);
  EXPECT_TRUE(secret["HSEA_T_TOKEN"]);
  EXPECT_FALSE(secret["HSEA_T_COUNT"]);
  EXPECT_FALSE(secret["HSEA_T_HOME"]);
}

TEST(Settings, RegistryReadsEachSectionOnceAndDescribesAllInOrder) {
  SettingsRegistry registry(env({{"HSEA_T_COUNT", "5"}, {"HSEA_T_DAYS", "2"}}));
  EXPECT_THROW(registry.get<Other>(), std::logic_error);  // no module loaded it yet
  Sample shown;  // values owned elsewhere (core's Config): printed as they are when described
  registry.show(kSample, shown);
  const Other& first = registry.load(kOther);
  EXPECT_EQ(first.days, 2);
  EXPECT_EQ(&registry.load(kOther), &first);  // a second module asking gets the same values
  EXPECT_EQ(&registry.get<Other>(), &first);
  EXPECT_EQ(&registry.get<Sample>(), &shown);

  shown.count = 6;
  std::string text = registry.describe();
  EXPECT_NE(text.find("HSEA_T_COUNT=6\n"), std::string::npos) << text;
  EXPECT_LT(text.find("HSEA_T_COUNT=6"), text.find("HSEA_T_DAYS=2")) << text;
  auto settings = registry.settings();
  ASSERT_EQ(settings.size(), kSample.entries.size() + 1);
  EXPECT_EQ(settings.front().name, "HSEA_T_COUNT");
  EXPECT_EQ(settings.back().name, "HSEA_T_DAYS");
}

TEST(Settings, RegistryThrowsConfigErrorNamingTheVariable) {
  SettingsRegistry registry(env({{"HSEA_T_DAYS", "10"}}));
  try {
    registry.load(kOther);
    FAIL() << "a bad value was accepted";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "HSEA_T_DAYS: must be an integer from 1 to 9");
  }
  EXPECT_THROW(registry.get<Other>(), std::logic_error);  // nothing half-loaded stays
}

TEST(Settings, ParseHelpers) {
  EXPECT_EQ(parse_integer("42", 0, 100), 42);
  EXPECT_EQ(parse_integer("-1", -5, 5), -1);
  EXPECT_FALSE(parse_integer("101", 0, 100));
  EXPECT_FALSE(parse_integer(" 1", 0, 100));
  EXPECT_FALSE(parse_integer("1.5", 0, 100));
  for (const char* yes : {"1", "true", "yes", "on"}) EXPECT_EQ(parse_bool(yes), true) << yes;
  for (const char* no : {"0", "false", "no", "off"}) EXPECT_EQ(parse_bool(no), false) << no;
  EXPECT_FALSE(parse_bool("TRUE"));
}

}  // namespace
}  // namespace hsea::core
