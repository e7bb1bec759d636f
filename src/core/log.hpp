#pragma once
// JSON-lines logging on stdout through spdlog. Every line is one JSON object:
// {"time":..., "level":..., "message":..., <fields>}. Fields are passed explicitly because
// coroutines interleave on a thread, so thread-local "current request" state would lie.
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>

namespace hsea::log {

enum class Level { kTrace, kDebug, kInfo, kWarn, kError };

struct Field {
  using Value = std::variant<std::string_view, std::int64_t, double, bool>;
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const std::string& v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, const char* v) : key(k), value(std::string_view(v)) {}
  Field(std::string_view k, std::int64_t v) : key(k), value(v) {}
  Field(std::string_view k, int v) : key(k), value(std::int64_t{v}) {}
  Field(std::string_view k, unsigned v) : key(k), value(std::int64_t{v}) {}
  Field(std::string_view k, std::size_t v) : key(k), value(static_cast<std::int64_t>(v)) {}
  Field(std::string_view k, double v) : key(k), value(v) {}
  Field(std::string_view k, bool v) : key(k), value(v) {}
  std::string_view key;
  Value value;
};

// Sets up the JSON sink; level is one of trace, debug, info, warn, error.
void init(std::string_view level);
bool enabled(Level level);
void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});
void flush();
// Logs what escaped a detached coroutine at error level, naming it (nothing when `error` is
// null): the one completion handler every co_spawn uses.
void escaped(std::exception_ptr error, std::string_view what);

inline void info(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kInfo, m, f);
}
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kWarn, m, f);
}
inline void error(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kError, m, f);
}
inline void debug(std::string_view m, std::initializer_list<Field> f = {}) {
  write(Level::kDebug, m, f);
}

// Appends `text` to `out` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view text);

// Text from a client (a header, a decoded query parameter) made fit to store or send as text:
// every byte that is not part of a valid UTF-8 sequence, and every NUL, becomes U+FFFD (as in
// the log), and the result is cut to at most `max_bytes` at a character boundary. PostgreSQL
// refuses invalid UTF-8 in a text value and libpq would cut a value at its first NUL.
std::string valid_utf8(std::string_view text, std::size_t max_bytes = std::string::npos);
// Whether `text` is valid UTF-8 (NUL included: it is valid UTF-8, check for it separately).
bool is_valid_utf8(std::string_view text);

}  // namespace hsea::log
