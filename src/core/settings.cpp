#include "core/settings.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

namespace hsea::core {

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

std::optional<long long> parse_integer(std::string_view text, long long min, long long max) {
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value < min || value > max) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") return true;
  if (text == "0" || text == "false" || text == "no" || text == "off") return false;
  return std::nullopt;
}

std::string mask_url_password(std::string_view url) {
  auto scheme = url.find("://");
  if (scheme == std::string_view::npos) return std::string(url);
  auto authority_start = scheme + 3;
  auto at = url.find('@', authority_start);
  auto slash = url.find('/', authority_start);
  if (at == std::string_view::npos || (slash != std::string_view::npos && at > slash)) {
    return std::string(url);
  }
  auto colon = url.find(':', authority_start);
  if (colon == std::string_view::npos || colon > at) return std::string(url);
  return fmt::format("{}***{}", url.substr(0, colon + 1), url.substr(at));
}

namespace detail {

std::string integer_range(long long min, long long max) {
  return fmt::format("must be an integer from {} to {}", min, max);
}

std::string show_text(const std::string& value, Show show) {
  if (show == Show::kPlain) return value;
  if (value.empty()) return "(unset)";
  return show == Show::kSecret ? std::string("***") : mask_url_password(value);
}

}  // namespace detail

std::string SettingsRegistry::describe() const {
  std::string out;
  for (const Loaded& l : sections_) out += l.describe();
  return out;
}

std::vector<Setting> SettingsRegistry::settings() const {
  std::vector<Setting> out;
  for (const Loaded& l : sections_) out.insert(out.end(), l.settings.begin(), l.settings.end());
  return out;
}

}  // namespace hsea::core
