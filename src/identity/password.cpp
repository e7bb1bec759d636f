#include "identity/password.hpp"

#include <sodium.h>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>
#include <unordered_set>

#include "core/embedded.hpp"

namespace hsea::identity {
namespace {

// OWASP Password Storage Cheat Sheet minimum for Argon2id: m=19 MiB, t=2, p=1 (libsodium's
// argon2id always uses one lane).
constexpr unsigned long long kOpsLimit = 2;
constexpr std::size_t kMemLimit = 19 * 1024 * 1024;

void init_sodium() {
  static const bool kReady = sodium_init() >= 0;
  if (!kReady) throw std::runtime_error("libsodium failed to initialise");
}

}  // namespace

std::string hash_password(std::string_view password) {
  init_sodium();
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), kOpsLimit, kMemLimit,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    throw std::runtime_error("out of memory while hashing a password");
  }
  return out;
}

bool verify_password(std::string_view hash, std::string_view password) {
  init_sodium();
  std::string h(hash);
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

bool password_needs_rehash(std::string_view hash) {
  init_sodium();
  std::string h(hash);
  return crypto_pwhash_str_needs_rehash(h.c_str(), kOpsLimit, kMemLimit) != 0;
}

std::string password_weakness(std::string_view password) {
  if (password.size() < 12) return "must be at least 12 characters";
  if (password.size() > 256) return "must be at most 256 characters";
  std::string lower(password);
  std::ranges::transform(lower, lower.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  static const std::unordered_set<std::string_view> kCommon = [] {
    std::unordered_set<std::string_view> set;
    std::string_view all = embedded::common_passwords();
    std::size_t start = 0;
    while (start < all.size()) {
      auto end = all.find('\n', start);
      if (end == std::string_view::npos) end = all.size();
      if (end > start) set.insert(all.substr(start, end - start));
      start = end + 1;
    }
    return set;
  }();
  if (kCommon.contains(lower)) return "is too common";
  if (std::ranges::all_of(lower, [&](char c) { return c == lower[0]; })) {
    return "must not repeat one character";
  }
  return {};
}

}  // namespace hsea::identity
