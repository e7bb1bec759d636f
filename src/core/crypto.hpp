#pragma once
// Small crypto helpers over OpenSSL; secrets never leave these functions in logs.
#include <optional>
#include <string>
#include <string_view>

namespace hsea::core {

std::string sha256_hex(std::string_view data);
// Raw 32-byte HMAC-SHA256.
std::string hmac_sha256(std::string_view key, std::string_view data);
// Compares in time independent of where the inputs differ (lengths may leak).
bool constant_time_equal(std::string_view a, std::string_view b);

// Secrets at rest (signing keys, webhook secrets): libsodium secretbox under a key derived from
// the server secret (HSEA_SECRET_KEY) and a context naming what is sealed, so one kind of sealed
// value never opens as another. The result is nonce || box, raw bytes.
std::string seal(std::string_view plain, std::string_view server_secret, std::string_view context);
// nullopt when the sealed bytes are malformed or were sealed under another secret or context.
std::optional<std::string> unseal(std::string_view sealed, std::string_view server_secret,
                                  std::string_view context);

}  // namespace hsea::core
