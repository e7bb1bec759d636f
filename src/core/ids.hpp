#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace hsea::core {

// RFC 9562 UUID version 7: 48-bit Unix milliseconds, then random bits; sorts by creation time.
std::string uuid_v7();
bool is_uuid(std::string_view text);

// `bytes` bytes from the operating system's CSPRNG, hex encoded.
std::string random_hex(std::size_t bytes);

// A client-supplied X-Request-Id is kept only if it is 1-128 of [A-Za-z0-9._:-].
bool is_safe_request_id(std::string_view text);

// W3C traceparent "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>": the trace id, or
// empty when the header is malformed or all zero.
std::string_view trace_id_from_traceparent(std::string_view header);

}  // namespace hsea::core
