#pragma once
// Settings sections. Every HSEA_* variable belongs to the section of the module that reads it:
// a section lists its entries (variable, default, secret or not, help, and a parser into a
// field of the module's own struct). Core parses and shows them; a module reads its section
// through the registrar (`const db::Settings& s = reg.settings(kSettings)`), and the
// application keeps every loaded section for `hsea serve`'s printout and the README check.
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace hsea::core {

// What README documents about one variable.
struct Setting {
  std::string_view name;
  std::string_view default_value;
  bool secret;
  std::string_view help;
};

using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup process_env();

// A bad value; what() is "VAR: reason" (main prints it and exits 2).
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One variable of section S: `parse` stores a value into S (or returns why it is bad), `show`
// renders the field as `hsea serve` prints it, secrets masked.
template <typename S>
struct Entry {
  Setting setting;
  std::function<std::optional<std::string>(const std::string& value, S& into)> parse;
  std::function<std::string(const S&)> show;
};

// A module's settings. S's member initializers are the defaults; `Setting::default_value` is
// how README and the help describe them.
template <typename S>
struct Section {
  std::string_view name;  // the module
  std::vector<Entry<S>> entries;
};

// The parsers every section shares.
std::optional<long long> parse_integer(std::string_view text, long long min, long long max);
std::optional<bool> parse_bool(std::string_view text);  // 1/0, true/false, yes/no, on/off
// "postgresql://user:secret@host/db" -> "postgresql://user:***@host/db".
std::string mask_url_password(std::string_view url);

// How a text setting is shown. kSecret prints "***", kUrl the URL with its password masked;
// both print "(unset)" when empty and mark the setting secret.
enum class Show { kPlain, kSecret, kUrl };
// Checks (and may normalise) a text value; returns why it is bad.
using Check = std::optional<std::string> (*)(std::string& value);

namespace detail {
std::string integer_range(long long min, long long max);  // "must be an integer from .. to .."
std::string show_text(const std::string& value, Show show);
}  // namespace detail

template <typename S, typename T>
Entry<S> int_setting(T S::*field, std::string_view name, std::string_view default_value,
                     long long min, long long max, std::string_view help) {
  return {{name, default_value, false, help},
          [field, min, max](const std::string& v, S& s) -> std::optional<std::string> {
            auto n = parse_integer(v, min, max);
            if (!n) return detail::integer_range(min, max);
            s.*field = static_cast<T>(*n);
            return std::nullopt;
          },
          [field](const S& s) { return std::to_string(s.*field); }};
}

template <typename S>
Entry<S> bool_setting(bool S::*field, std::string_view name, std::string_view default_value,
                      std::string_view help) {
  return {{name, default_value, false, help},
          [field](const std::string& v, S& s) -> std::optional<std::string> {
            auto b = parse_bool(v);
            if (!b) return std::string("must be true or false");
            s.*field = *b;
            return std::nullopt;
          },
          [field](const S& s) { return std::string(s.*field ? "true" : "false"); }};
}

template <typename S>
Entry<S> string_setting(std::string S::*field, std::string_view name,
                        std::string_view default_value, std::string_view help,
                        Check check = nullptr, Show show = Show::kPlain) {
  return {{name, default_value, show != Show::kPlain, help},
          [field, check](const std::string& v, S& s) -> std::optional<std::string> {
            std::string value = v;
            if (check != nullptr) {
              if (auto error = check(value)) return error;
            }
            s.*field = std::move(value);
            return std::nullopt;
          },
          [field, show](const S& s) { return detail::show_text(s.*field, show); }};
}

// Reads a section from the environment: the defaults, overridden by each variable that is set.
// The first bad value is the error "VAR: reason".
template <typename S>
std::expected<S, std::string> load_section(const Section<S>& section, const EnvLookup& env) {
  S values{};
  for (const Entry<S>& entry : section.entries) {
    auto value = env(entry.setting.name);
    if (!value) continue;
    if (auto error = entry.parse(*value, values)) {
      return std::unexpected(std::string(entry.setting.name) + ": " + *error);
    }
  }
  return values;
}

// "  VAR=value\n" per entry, secrets masked.
template <typename S>
std::string describe(const Section<S>& section, const S& values) {
  std::string out;
  for (const Entry<S>& entry : section.entries) {
    out += "  ";
    out += entry.setting.name;
    out += '=';
    out += entry.show(values);
    out += '\n';
  }
  return out;
}

// Every section the process loaded, in load order: one value per section type, alive as long
// as the registry (the application owns it).
class SettingsRegistry {
 public:
  explicit SettingsRegistry(EnvLookup env) : env_(std::move(env)) {}

  // Reads the section now; throws ConfigError naming the first bad variable. A type already
  // loaded is not read again.
  template <typename S>
  const S& load(const Section<S>& section) {
    if (const S* found = find<S>()) return *found;
    auto loaded = load_section(section, env_);
    if (!loaded) throw ConfigError(loaded.error());
    auto value = std::make_shared<const S>(std::move(*loaded));
    const S& ref = *value;
    add(section, ref, value);
    return ref;
  }

  // A section whose values live elsewhere and may still change before they are shown (core's
  // Config, which main owns and completes).
  template <typename S>
  void show(const Section<S>& section, const S& values) {
    add(section, values, nullptr);
  }

  // The loaded S, or std::logic_error when no module has loaded it yet.
  template <typename S>
  const S& get() const {
    if (const S* found = find<S>()) return *found;
    throw std::logic_error("a settings section was read before its module registered");
  }

  std::string describe() const;           // every section, "  VAR=value\n", secrets masked
  std::vector<Setting> settings() const;  // every entry, in order

 private:
  template <typename T>
  static const void* key() {
    static const char k = 0;
    return &k;
  }

  template <typename S>
  const S* find() const {
    for (const Loaded& l : sections_) {
      if (l.type == key<S>()) return static_cast<const S*>(l.value);
    }
    return nullptr;
  }

  template <typename S>
  void add(const Section<S>& section, const S& values, std::shared_ptr<const void> owned) {
    Loaded l{.type = key<S>(), .value = &values, .owned = std::move(owned)};
    for (const Entry<S>& e : section.entries) l.settings.push_back(e.setting);
    l.describe = [section, v = &values] { return core::describe(section, *v); };
    sections_.push_back(std::move(l));
  }

  struct Loaded {
    const void* type;
    const void* value;
    std::shared_ptr<const void> owned;  // null when the values live elsewhere
    std::vector<Setting> settings;
    std::function<std::string()> describe;
  };
  EnvLookup env_;
  std::vector<Loaded> sections_;
};

}  // namespace hsea::core
