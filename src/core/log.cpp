#include "core/log.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
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
    line_.clear();  // reused under the sink's mutex: an access line outgrows the inline buffer
    formatter_->format(msg, line_);
    std::fwrite(line_.data(), 1, line_.size(), stdout);
  }
  void flush_() override { std::fflush(stdout); }

 private:
  spdlog::memory_buf_t line_;
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
    // {"time":"<cached>.<6 digits>Z","level":"<level>", without a format string to parse.
    auto put = [&dest](std::string_view text) {
      dest.append(text.data(), text.data() + text.size());
    };
    put(R"({"time":")");
    put(cached_prefix_);
    char fraction[8] = {'.', '0', '0', '0', '0', '0', '0', 'Z'};
    for (auto [i, us] = std::pair{7, micros.count()}; i > 1; --i, us /= 10) {
      fraction[i - 1] = static_cast<char>('0' + us % 10);
    }
    put(std::string_view(fraction, sizeof fraction));
    put(R"(","level":")");
    auto level = spdlog::level::to_string_view(msg.level);
    put(std::string_view(level.data(), level.size()));
    put(R"(",)");
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

namespace {
// Printable ASCII other than '"' and '\\': copied as it is.
constexpr std::array<bool, 256> kPlainJson = [] {
  std::array<bool, 256> plain{};
  for (int c = 0x20; c < 0x7f; ++c) plain[c] = c != '"' && c != '\\';
  return plain;
}();
}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  // Nearly every value (ids, paths, addresses, keys) is plain: quoted in one copy.
  std::size_t plain = 0;
  while (plain < text.size() && kPlainJson[static_cast<unsigned char>(text[plain])]) ++plain;
  if (plain == text.size()) {
    std::size_t at = out.size();
    out.append(text.size() + 2, '"');
    std::memcpy(out.data() + at + 1, text.data(), text.size());
    return;
  }
  out.push_back('"');
  for (std::size_t i = 0; i < text.size(); ++i) {
    // Runs of plain characters in one append.
    std::size_t run = i;
    while (run < text.size() && kPlainJson[static_cast<unsigned char>(text[run])]) ++run;
    if (run != i) {
      out.append(text.data() + i, run - i);
      i = run;
      if (i == text.size()) break;
    }
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
  // Reused per thread: a line costs no allocation once the buffer has grown.
  thread_local std::string payload;
  payload.clear();
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
