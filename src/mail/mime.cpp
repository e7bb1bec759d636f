#include "mail/mime.hpp"

#include <ctime>
#include <stdexcept>

namespace hsea::mail {
namespace {

constexpr char kHex[] = "0123456789ABCDEF";
constexpr char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                 (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += kBase64[v & 63];
  }
  if (i + 1 == in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    unsigned v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += kBase64[(v >> 18) & 63];
    out += kBase64[(v >> 12) & 63];
    out += kBase64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool is_printable_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

// Control characters (CR and LF included) become spaces: a header value stays one header.
std::string without_controls(std::string_view value) {
  std::string out(value);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = ' ';
  }
  return out;
}

// Encoded words of at most 75 characters, split at UTF-8 character boundaries, joined by a
// folding CRLF SP.
std::string encoded_words(std::string_view value) {
  constexpr std::size_t kMaxBytes = 45;  // 60 base64 characters + 12 of "=?UTF-8?B??="
  std::string out;
  std::size_t i = 0;
  while (i < value.size()) {
    std::size_t end = std::min(value.size(), i + kMaxBytes);
    // Back off to a character boundary (never split a multi-byte sequence).
    while (end < value.size() && end > i &&
           (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) {
      --end;
    }
    if (end == i) end = std::min(value.size(), i + kMaxBytes);  // not UTF-8: split anyway
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?" + base64(value.substr(i, end - i)) + "?=";
    i = end;
  }
  return out;
}

// Folds printable ASCII at spaces so lines stay under 78 characters where possible.
std::string folded(std::string_view value, std::size_t first_line_used) {
  std::string out;
  std::size_t line = first_line_used;
  std::size_t i = 0;
  while (i < value.size()) {
    std::size_t space = value.find(' ', i + 1);
    std::size_t end = space == std::string_view::npos ? value.size() : space;
    std::string_view word = value.substr(i, end - i);
    if (line + word.size() > 78 && !out.empty() && word.front() == ' ') {
      out += "\r\n";
      line = 0;
    }
    out += word;
    line += word.size();
    i = end;
  }
  return out;
}

std::string checked_message_id(const std::string& id) {
  if (id.size() < 5 || id.front() != '<' || id.back() != '>' || id.find('@') == std::string::npos ||
      !is_printable_ascii(id) || id.find(' ') != std::string::npos) {
    throw std::invalid_argument("bad Message-ID");
  }
  return id;
}

}  // namespace

bool valid_address(std::string_view address) {
  if (address.empty() || address.size() > 254) return false;
  std::size_t at = address.rfind('@');
  if (at == std::string_view::npos || at == 0 || at + 1 == address.size()) return false;
  for (unsigned char c : address) {
    if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == ',' || c == ';' ||
        c == '(' || c == ')' || c == '\\') {
      return false;
    }
  }
  return true;
}

std::string encode_header_text(std::string_view value) {
  std::string clean = without_controls(value);
  // "=?" in plain text could read as an encoded word: encode such a value too.
  if (is_printable_ascii(clean) && clean.find("=?") == std::string::npos) {
    return folded(clean, 9);  // after "Subject: "
  }
  return encoded_words(clean);
}

std::string mailbox(std::string_view name, std::string_view address) {
  if (!valid_address(address)) throw std::invalid_argument("bad e-mail address");
  std::string clean = without_controls(name);
  if (clean.find_first_not_of(' ') == std::string::npos) return std::string(address);
  std::string display;
  if (is_printable_ascii(clean) && clean.find("=?") == std::string::npos) {
    display = "\"";
    for (char c : clean) {
      if (c == '"' || c == '\\') display += '\\';
      display += c;
    }
    display += '"';
  } else {
    display = encoded_words(clean);
  }
  return display + " <" + std::string(address) + ">";
}

std::string rfc5322_date(std::int64_t epoch_seconds) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = static_cast<std::time_t>(epoch_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string quoted_printable(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  std::size_t line = 0;  // characters on the current output line
  auto emit = [&](std::string_view piece) {
    // A soft line break keeps every line at most 76 characters ("=" included).
    if (line + piece.size() > 75) {
      out += "=\r\n";
      line = 0;
    }
    out += piece;
    line += piece.size();
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') continue;  // CRLF: at the LF
    if (c == '\n' || c == '\r') {
      out += "\r\n";
      line = 0;
      continue;
    }
    bool line_end = i + 1 == text.size() || text[i + 1] == '\n' || text[i + 1] == '\r';
    bool literal = (c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !line_end);
    // A leading "." or "From " is encoded, so no transport ever rewrites the line.
    if (literal && line == 0 && (c == '.' || (c == 'F' && text.substr(i, 5) == "From "))) {
      literal = false;
    }
    if (literal) {
      char one[1] = {static_cast<char>(c)};
      emit(std::string_view(one, 1));
    } else {
      char three[3] = {'=', kHex[c >> 4], kHex[c & 15]};
      emit(std::string_view(three, 3));
    }
  }
  return out;
}

std::string compose(const Envelope& e) {
  std::string message_id = checked_message_id(e.message_id);
  if (!valid_address(e.to_address)) throw std::invalid_argument("bad recipient address");
  // The boundary holds "=_", which quoted-printable never produces, so no part can contain it.
  std::string boundary = "=_hsea_";
  for (char c : message_id) {
    if (std::isalnum(static_cast<unsigned char>(c))) boundary += c;
  }
  boundary = boundary.substr(0, 60);
  std::string out;
  out.reserve(e.text.size() + e.html.size() + 1024);
  out += "Date: " + rfc5322_date(e.date) + "\r\n";
  out += "From: " + mailbox(e.from_name, e.from_address) + "\r\n";
  out += "To: " + mailbox(e.to_name, e.to_address) + "\r\n";
  out += "Subject: " + encode_header_text(e.subject) + "\r\n";
  out += "Message-ID: " + message_id + "\r\n";
  out += "MIME-Version: 1.0\r\n";
  out += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n";
  out += "\r\n";
  out += "This is a multi-part message in MIME format.\r\n";
  auto part = [&](const char* type, const std::string& body) {
    out += "\r\n--" + boundary + "\r\n";
    out += std::string("Content-Type: ") + type + "; charset=utf-8\r\n";
    out += "Content-Transfer-Encoding: quoted-printable\r\n\r\n";
    out += quoted_printable(body);
  };
  part("text/plain", e.text);  // the last alternative is the preferred one
  part("text/html", e.html);
  out += "\r\n--" + boundary + "--\r\n";
  return out;
}

}  // namespace hsea::mail
