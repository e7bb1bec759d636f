#pragma once
// Passwords: Argon2id through libsodium at OWASP's minimum or stronger (19 MiB, 2 passes,
// 1 lane). Hashing and verifying are slow on purpose: call them on the blocking pool.
#include <string>
#include <string_view>

namespace hsea::identity {

std::string hash_password(std::string_view password);
bool verify_password(std::string_view hash, std::string_view password);
// True when the hash was made with other parameters than hash_password uses now.
bool password_needs_rehash(std::string_view hash);

// Empty when acceptable, otherwise why not: at least 12 characters, at most 256, and not in
// the common-password list shipped with the project.
std::string password_weakness(std::string_view password);

}  // namespace hsea::identity
