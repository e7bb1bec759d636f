#pragma once
// Internet Message Format (RFC 5322) and MIME (RFC 2045-2047) for outgoing mail: pure functions,
// no I/O. A message is multipart/alternative with a plain-text and an HTML part, both UTF-8 in
// quoted-printable, with CRLF line ends.
#include <cstdint>
#include <string>
#include <string_view>

namespace hsea::mail {

struct Envelope {
  std::string from_name;  // display name (may be empty or non-ASCII)
  std::string from_address;
  std::string to_name;
  std::string to_address;
  std::string subject;
  std::string message_id;  // "<id@host>", the same on every attempt
  std::int64_t date = 0;   // seconds since the epoch (UTC)
  std::string text;
  std::string html;
};

// The whole message, headers and body. Throws std::invalid_argument for an address that could
// break the header (CR, LF, <, >, a missing @) or a Message-ID not of the form <...@...>.
std::string compose(const Envelope& envelope);

// An unstructured header value (Subject): printable ASCII as it is, anything else as RFC 2047
// encoded words (UTF-8, base64), folded so that no line exceeds 78 characters. CR, LF and other
// control characters become spaces first.
std::string encode_header_text(std::string_view value);
// "Name <address>", the name quoted or encoded as the header needs; just the address without
// a name.
std::string mailbox(std::string_view name, std::string_view address);
// RFC 5322 date in UTC: "Tue, 24 Nov 2026 08:49:11 +0000".
std::string rfc5322_date(std::int64_t epoch_seconds);
// Quoted-printable (RFC 2045 6.7) of UTF-8 text; line breaks become CRLF.
std::string quoted_printable(std::string_view text);
// True for an address this module sends to: local@domain, printable ASCII without spaces,
// angle brackets, quotes or commas, at most 254 bytes.
bool valid_address(std::string_view address);

}  // namespace hsea::mail
