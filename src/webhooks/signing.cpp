// Standard Webhooks signatures, signing secrets and their sealing at rest.
#include <openssl/evp.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <random>
#include <stdexcept>

#include "core/crypto.hpp"
#include "webhooks/webhooks.hpp"

namespace hsea::webhooks {
namespace {

constexpr std::string_view kPrefix = "whsec_";

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  for (char c : text) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '/' && c != '=') {
      return std::nullopt;
    }
  }
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

std::string new_secret() {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  std::string bytes(32, '\0');
  randombytes_buf(bytes.data(), bytes.size());
  return std::string(kPrefix) + base64_encode(bytes);
}

std::optional<std::string> secret_key_bytes(std::string_view secret) {
  if (!secret.starts_with(kPrefix)) return std::nullopt;
  auto key = base64_decode(secret.substr(kPrefix.size()));
  if (!key || key->empty()) return std::nullopt;
  return key;
}

std::string signature(std::string_view secret, std::string_view id, std::int64_t timestamp,
                      std::string_view body) {
  auto key = secret_key_bytes(secret);
  if (!key) throw std::invalid_argument("a webhook signing secret is malformed");
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content.append(id).append(".").append(std::to_string(timestamp)).append(".").append(body);
  return "v1," + base64_encode(core::hmac_sha256(*key, content));
}

std::string signature_header(const std::vector<std::string>& secrets, std::string_view id,
                             std::int64_t timestamp, std::string_view body) {
  std::string out;
  for (const std::string& s : secrets) {
    if (!out.empty()) out += ' ';
    out += signature(s, id, timestamp, body);
  }
  return out;
}

// The context keeps a sealed webhook secret from opening as anything else (and vice versa).
constexpr std::string_view kSealContext = "hsea webhook signing secrets v1";

std::string seal_secret(std::string_view plain, std::string_view server_secret) {
  return base64_encode(core::seal(plain, server_secret, kSealContext));
}

std::string unseal_secret(std::string_view sealed, std::string_view server_secret) {
  auto raw = base64_decode(sealed);
  if (!raw) throw std::runtime_error("webhooks: a sealed signing secret is malformed");
  auto plain = core::unseal(*raw, server_secret, kSealContext);
  if (!plain) {
    throw std::runtime_error(
        "webhooks: cannot open a signing secret: it is malformed, or HSEA_SECRET_KEY differs "
        "from the one that sealed it");
  }
  return *plain;
}

std::chrono::milliseconds retry_backoff(int attempt) {
  using namespace std::chrono_literals;
  static constexpr std::chrono::milliseconds kSteps[] = {5s, 5min, 30min, 2h, 5h, 10h};
  std::size_t i = static_cast<std::size_t>(std::clamp(attempt, 1, 6) - 1);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<std::int64_t> jitter(0, kSteps[i].count() / 10);
  return kSteps[i] + std::chrono::milliseconds(jitter(rng));
}

}  // namespace hsea::webhooks
