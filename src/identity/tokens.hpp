#pragma once
// Access tokens: JWT signed with ES256, 15-minute lifetime, `kid` naming the key. Keys live in
// signing_keys (private halves sealed with a key derived from HSEA_SECRET_KEY), rotate with
// `hsea keys rotate`, and are published at /.well-known/jwks.json.
//
// Verification accepts exactly alg ES256 with a known kid: alg none, HS/RS confusion, an
// unknown kid, a bad signature, a wrong issuer or audience, expiry, and an nbf more than 30 s
// ahead are all refused.
#include <cstdint>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

typedef struct evp_pkey_st EVP_PKEY;

namespace hsea::identity {

struct AccessClaims {
  std::string user_id;     // sub
  std::string tenant_id;   // tid: the tenant chosen at sign-in
  std::string session_id;  // sid
  std::int64_t issued_at = 0;
  std::int64_t expires_at = 0;
};

constexpr std::int64_t kAccessTokenSeconds = 15 * 60;  // HSEA_ACCESS_TOKEN_SECONDS' default

// Seconds since the Unix epoch: the clock of token claims.
std::int64_t unix_now();

class KeyStore {
 public:
  // Loads the current keys with the given database URL (blocking: call before serving),
  // creating the first key when there is none.
  static std::unique_ptr<KeyStore> load(const std::string& database_url,
                                        const std::string& secret_key, std::string issuer);
  // Adds a new signing key; the previous one keeps verifying for an hour. Returns its kid.
  static std::string rotate(const std::string& database_url, const std::string& secret_key);

  ~KeyStore();
  std::string sign(const AccessClaims& claims) const;
  std::expected<AccessClaims, std::string> verify(std::string_view token, std::int64_t now) const;
  std::string jwks_json() const;

  struct Key;

 private:
  KeyStore() = default;
  std::vector<std::unique_ptr<Key>> keys_;  // newest first; keys_[0] signs
  std::string issuer_;
};

// An ES256 signature of `data` in JWS form (r || s, 32 bytes each).
std::string es256_sign(EVP_PKEY* pkey, std::string_view data);

// Unpadded base64url (RFC 4648 section 5).
std::string base64url_encode(std::string_view bytes);
std::expected<std::string, std::string> base64url_decode(std::string_view text);

// A secret at rest as text for a database column: core::seal under `context`, base64url.
// unseal_text gives nullopt for text that is not such a value under this secret and context.
std::string seal_text(std::string_view plain, std::string_view secret, std::string_view context);
std::optional<std::string> unseal_text(std::string_view sealed, std::string_view secret,
                                       std::string_view context);

}  // namespace hsea::identity
