#pragma once
// Small crypto helpers over OpenSSL; secrets never leave these functions in logs.
#include <string>
#include <string_view>

namespace hsea::core {

std::string sha256_hex(std::string_view data);
// Raw 32-byte HMAC-SHA256.
std::string hmac_sha256(std::string_view key, std::string_view data);
// Compares in time independent of where the inputs differ (lengths may leak).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace hsea::core
