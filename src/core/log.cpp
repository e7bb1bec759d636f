#include "core/log.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>

namespace hsea::log {
namespace {

// Writes whole lines to stdout through a large stdio buffer; flushed every second and at once
// for warnings and errors. A flush per line would cost a write(2) per request.
class StdoutSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  StdoutSink() { std::setvbuf(stdout, nullptr, _IOFBF, 1 << 16); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
  void flush_() override { std::fflush(stdout); }
};

// The payload already holds `"message":...,<fields>`; this wraps it with time and level.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto since_epoch = msg.time.time_since_epoch();
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since_epoch - seconds);
    // Formatting a calendar time is the costliest part of a line: do it once a second.
    if (seconds != cached_second_) {
      cached_second_ = seconds;
      cached_prefix_ = fmt::format("{:%Y-%m-%dT%H:%M:%S}", std::chrono::sys_seconds(seconds));
    }
    fmt::format_to(std::back_inserter(dest), R"({{"time":"{}.{:06d}Z","level":"{}",)",
                   cached_prefix_, micros.count(), spdlog::level::to_string_view(msg.level));
    dest.append(msg.payload.data(), msg.payload.data() + msg.payload.size());
    dest.push_back('}');
    dest.push_back('\n');
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }

 private:
  // Guarded by the sink's mutex, like every formatter call.
  std::chrono::seconds cached_second_{-1};
  std::string cached_prefix_;
};

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kTrace:
      return spdlog::level::trace;
    case Level::kDebug:
      return spdlog::level::debug;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kWarn:
      return spdlog::level::warn;
    case Level::kError:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger>& logger() {
  static std::shared_ptr<spdlog::logger> instance = [] {
    auto sink = std::make_shared<StdoutSink>();
    auto l = std::make_shared<spdlog::logger>("hsea", sink);
    l->set_formatter(std::make_unique<JsonFormatter>());
    l->flush_on(spdlog::level::warn);
    return l;
  }();
  return instance;
}

}  // namespace

void init(std::string_view level) {
  auto& l = logger();
  l->set_level(spdlog::level::from_str(std::string(level)));
  spdlog::set_default_logger(l);
  spdlog::flush_every(std::chrono::seconds(1));
}

bool enabled(Level level) { return logger()->should_log(to_spdlog(level)); }

namespace {
// Length of the valid UTF-8 sequence starting at s[i], or 0 when it is not valid.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  std::size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return 0;
  }
  auto c1 = static_cast<unsigned char>(s[i + 1]);
  if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
      (c == 0xf4 && c1 > 0x8f)) {
    return 0;  // overlong, surrogate or beyond U+10FFFF
  }
  return n;
}
}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out.push_back('"');
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      // JSON text must be Unicode: keep valid UTF-8, replace anything else with U+FFFD.
      if (std::size_t n = utf8_sequence(text, i); n > 0) {
        out.append(text.substr(i, n));
        i += n - 1;
      } else {
        out += "\\ufffd";
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          fmt::format_to(std::back_inserter(out), "\\u{:04x}", c);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string valid_utf8(std::string_view text, std::size_t max_bytes) {
  constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  for (std::size_t i = 0; i < text.size();) {
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t n = c < 0x80 ? 1 : utf8_sequence(text, i);
    std::string_view piece = n == 0 || c == 0 ? kReplacement : text.substr(i, n);
    if (out.size() + piece.size() > max_bytes) break;
    out.append(piece);
    i += n == 0 ? 1 : n;
  }
  return out;
}

bool is_valid_utf8(std::string_view text) {
  for (std::size_t i = 0; i < text.size();) {
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
    } else if (std::size_t n = utf8_sequence(text, i); n > 0) {
      i += n;
    } else {
      return false;
    }
  }
  return true;
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  auto& l = logger();
  auto spd_level = to_spdlog(level);
  if (!l->should_log(spd_level)) return;
  std::string payload;
  payload.reserve(128 + message.size());
  payload += "\"message\":";
  append_json_string(payload, message);
  for (const Field& field : fields) {
    payload.push_back(',');
    append_json_string(payload, field.key);
    payload.push_back(':');
    std::visit(
        [&payload](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, std::string_view>) {
            append_json_string(payload, v);
          } else if constexpr (std::is_same_v<T, bool>) {
            payload += v ? "true" : "false";
          } else {
            fmt::format_to(std::back_inserter(payload), "{}", v);
          }
        },
        field.value);
  }
  l->log(spd_level, spdlog::string_view_t(payload.data(), payload.size()));
}

void flush() { logger()->flush(); }

void escaped(std::exception_ptr error, std::string_view what) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    log::error("background task failed", {{"task", what}, {"error", e.what()}});
  } catch (...) {
    log::error("background task failed", {{"task", what}, {"error", "unknown exception"}});
  }
}

}  // namespace hsea::log
