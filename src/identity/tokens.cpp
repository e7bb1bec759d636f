#include "identity/tokens.hpp"

#include "core/crypto.hpp"

#include <fmt/format.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "core/ids.hpp"
#include "db/blocking.hpp"

namespace hsea::identity {

struct KeyStore::Key {
  std::string kid;
  EVP_PKEY* pkey = nullptr;  // private for the signing key, at least public for all
  std::string x, y;          // base64url public coordinates for the JWK
  ~Key() { EVP_PKEY_free(pkey); }
};

namespace {

constexpr std::string_view kAudience = "hsea";
// Clock skew allowed for a token's nbf between the issuer and this node.
constexpr std::int64_t kNotBeforeLeewaySeconds = 30;

constexpr std::string_view kSealContext = "hsea jwt signing keys v1";

std::string seal(const std::string& plain, const std::string& secret) {
  return seal_text(plain, secret, kSealContext);
}

std::string unseal(const std::string& sealed, const std::string& secret) {
  auto plain = unseal_text(sealed, secret, kSealContext);
  if (!plain) {
    throw std::runtime_error(
        "signing keys: cannot open a private key: it is malformed, or HSEA_SECRET_KEY differs "
        "from the one that sealed it");
  }
  return *plain;
}

std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::unique_ptr<KeyStore::Key> key_from_pem(std::string kid, const std::string& pem,
                                            bool is_private) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* pkey = is_private ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr)
                              : PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (pkey == nullptr) throw std::runtime_error("signing keys: unreadable key " + kid);
  auto key = std::make_unique<KeyStore::Key>();
  key->kid = std::move(kid);
  key->pkey = pkey;
  for (auto [param, out] : {std::pair{OSSL_PKEY_PARAM_EC_PUB_X, &key->x},
                            std::pair{OSSL_PKEY_PARAM_EC_PUB_Y, &key->y}}) {
    BIGNUM* bn = nullptr;
    if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1) {
      throw std::runtime_error("signing keys: not an EC key");
    }
    unsigned char buf[32];
    BN_bn2binpad(bn, buf, sizeof buf);
    BN_free(bn);
    *out = base64url_encode(std::string_view(reinterpret_cast<char*>(buf), sizeof buf));
  }
  return key;
}

void insert_new_key(db::BlockingConnection& conn, const std::string& secret) {
  EVP_PKEY* pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (pkey == nullptr) throw std::runtime_error("signing keys: key generation failed");
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(priv, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  PEM_write_bio_PUBKEY(pub, pkey);
  std::string private_pem = bio_string(priv), public_pem = bio_string(pub);
  BIO_free(priv);
  BIO_free(pub);
  EVP_PKEY_free(pkey);
  std::string kid = core::random_hex(8);
  conn.exec("UPDATE signing_keys SET retired_at = now() WHERE retired_at IS NULL");
  conn.exec(
      "INSERT INTO signing_keys (kid, algorithm, public_pem, sealed_private) "
      "VALUES ($1, 'ES256', $2, $3)",
      {kid, public_pem, seal(private_pem, secret)});
  OPENSSL_cleanse(private_pem.data(), private_pem.size());
}

std::string der_to_raw(const unsigned char* der, std::size_t len) {
  ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &der, static_cast<long>(len));
  if (sig == nullptr) throw std::runtime_error("bad ECDSA signature");
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig, &r, &s);
  std::string raw(64, '\0');
  BN_bn2binpad(r, reinterpret_cast<unsigned char*>(raw.data()), 32);
  BN_bn2binpad(s, reinterpret_cast<unsigned char*>(raw.data()) + 32, 32);
  ECDSA_SIG_free(sig);
  return raw;
}

bool verify_es256(EVP_PKEY* pkey, std::string_view signed_part, const std::string& raw_sig) {
  if (raw_sig.size() != 64) return false;
  ECDSA_SIG* sig = ECDSA_SIG_new();
  auto* bytes = reinterpret_cast<const unsigned char*>(raw_sig.data());
  ECDSA_SIG_set0(sig, BN_bin2bn(bytes, 32, nullptr), BN_bin2bn(bytes + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (der_len <= 0) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
            EVP_DigestVerify(ctx, der, static_cast<std::size_t>(der_len),
                             reinterpret_cast<const unsigned char*>(signed_part.data()),
                             signed_part.size()) == 1;
  EVP_MD_CTX_free(ctx);
  OPENSSL_free(der);
  return ok;
}

std::optional<boost::json::object> decode_json_part(std::string_view part) {
  auto raw = base64url_decode(part);
  if (!raw) return std::nullopt;
  boost::system::error_code ec;
  auto value = boost::json::parse(*raw, ec);
  if (ec || !value.is_object()) return std::nullopt;
  return std::move(value.as_object());
}

std::string string_claim(const boost::json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_string()) return {};
  return std::string(it->value().as_string());
}

std::optional<std::int64_t> int_claim(const boost::json::object& o, std::string_view name) {
  auto it = o.find(name);
  if (it == o.end() || !it->value().is_int64()) return std::nullopt;
  return it->value().as_int64();
}

}  // namespace

std::string base64url_encode(std::string_view bytes) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(std::strlen(out.c_str()));
  return out;
}

std::expected<std::string, std::string> base64url_decode(std::string_view text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return std::unexpected(std::string("not base64url"));
  }
  out.resize(len);
  return out;
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

KeyStore::~KeyStore() = default;

std::unique_ptr<KeyStore> KeyStore::load(const std::string& database_url,
                                         const std::string& secret_key, std::string issuer) {
  db::BlockingConnection conn(database_url, "signing keys");
  auto rows = [&] {
    return conn.exec(
        "SELECT kid, public_pem, sealed_private, retired_at IS NULL AS current FROM signing_keys "
        "WHERE retired_at IS NULL OR retired_at > now() - interval '1 hour' "
        "ORDER BY created_at DESC");
  };
  auto has_current = [](const db::Result& r) { return !r.empty() && r.get(0, "current") == "t"; };
  db::Result res = rows();
  if (!has_current(res)) {
    conn.exec("BEGIN");
    conn.exec("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE");
    if (!has_current(rows())) insert_new_key(conn, secret_key);
    conn.exec("COMMIT");
    res = rows();
  }
  std::unique_ptr<KeyStore> store(new KeyStore());
  store->issuer_ = std::move(issuer);
  for (int r = 0; r < res.rows(); ++r) {
    std::string kid = res.text(r, "kid");
    if (r == 0) {
      std::string pem = unseal(res.text(r, "sealed_private"), secret_key);
      store->keys_.push_back(key_from_pem(kid, pem, true));
      OPENSSL_cleanse(pem.data(), pem.size());
    } else {
      store->keys_.push_back(key_from_pem(kid, res.text(r, "public_pem"), false));
    }
  }
  return store;
}

std::string KeyStore::rotate(const std::string& database_url, const std::string& secret_key) {
  db::BlockingConnection conn(database_url, "signing keys");
  conn.exec("BEGIN");
  insert_new_key(conn, secret_key);
  db::Result res = conn.exec("SELECT kid FROM signing_keys WHERE retired_at IS NULL");
  conn.exec("COMMIT");
  return res.text(0, "kid");
}

std::string KeyStore::sign(const AccessClaims& claims) const {
  const Key& key = *keys_.front();
  boost::json::object header{{"alg", "ES256"}, {"typ", "JWT"}, {"kid", key.kid}};
  boost::json::object payload{{"iss", issuer_},           {"aud", kAudience},
                              {"sub", claims.user_id},    {"tid", claims.tenant_id},
                              {"sid", claims.session_id}, {"iat", claims.issued_at},
                              {"exp", claims.expires_at}};
  std::string signing_input = base64url_encode(boost::json::serialize(header)) + "." +
                              base64url_encode(boost::json::serialize(payload));
  return signing_input + "." + base64url_encode(es256_sign(key.pkey, signing_input));
}

std::string es256_sign(EVP_PKEY* pkey, std::string_view data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::size_t len = 0;
  std::vector<unsigned char> der;
  bool ok = EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1;
  if (ok) {
    der.resize(len);
    ok = EVP_DigestSign(ctx, der.data(), &len, reinterpret_cast<const unsigned char*>(data.data()),
                        data.size()) == 1;
  }
  EVP_MD_CTX_free(ctx);
  if (!ok) throw std::runtime_error("ES256 signing failed");
  return der_to_raw(der.data(), len);
}

std::expected<AccessClaims, std::string> KeyStore::verify(std::string_view token,
                                                          std::int64_t now) const {
  auto dot1 = token.find('.');
  auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos) {
    return std::unexpected(std::string("malformed token"));
  }
  auto header = decode_json_part(token.substr(0, dot1));
  if (!header) return std::unexpected(std::string("malformed header"));
  if (string_claim(*header, "alg") != "ES256") return std::unexpected(std::string("bad alg"));
  std::string kid = string_claim(*header, "kid");
  const Key* key = nullptr;
  for (const auto& k : keys_) {
    if (k->kid == kid) key = k.get();
  }
  if (key == nullptr) return std::unexpected(std::string("unknown kid"));
  auto signature = base64url_decode(token.substr(dot2 + 1));
  if (!signature || !verify_es256(key->pkey, token.substr(0, dot2), *signature)) {
    return std::unexpected(std::string("bad signature"));
  }
  auto payload = decode_json_part(token.substr(dot1 + 1, dot2 - dot1 - 1));
  if (!payload) return std::unexpected(std::string("malformed payload"));
  if (string_claim(*payload, "iss") != issuer_ || string_claim(*payload, "aud") != kAudience) {
    return std::unexpected(std::string("wrong issuer or audience"));
  }
  AccessClaims claims{.user_id = string_claim(*payload, "sub"),
                      .tenant_id = string_claim(*payload, "tid"),
                      .session_id = string_claim(*payload, "sid")};
  auto iat = int_claim(*payload, "iat"), exp = int_claim(*payload, "exp");
  if (!iat || !exp || !core::is_uuid(claims.user_id) || !core::is_uuid(claims.session_id)) {
    return std::unexpected(std::string("missing claims"));
  }
  if (*exp <= now) return std::unexpected(std::string("expired"));
  if (*iat > now + 60) return std::unexpected(std::string("issued in the future"));
  // nbf (RFC 7519 4.1.5): optional, but when present an integer like iat and exp, and not
  // later than now beyond a small allowance for clock skew.
  if (payload->contains("nbf")) {
    auto nbf = int_claim(*payload, "nbf");
    if (!nbf) return std::unexpected(std::string("malformed nbf"));
    if (*nbf > now + kNotBeforeLeewaySeconds) return std::unexpected(std::string("not yet valid"));
  }
  claims.issued_at = *iat;
  claims.expires_at = *exp;
  return claims;
}

std::string KeyStore::jwks_json() const {
  boost::json::array keys;
  for (const auto& k : keys_) {
    keys.push_back(boost::json::object{{"kty", "EC"},
                                       {"crv", "P-256"},
                                       {"alg", "ES256"},
                                       {"use", "sig"},
                                       {"kid", k->kid},
                                       {"x", k->x},
                                       {"y", k->y}});
  }
  return boost::json::serialize(boost::json::object{{"keys", std::move(keys)}});
}

std::string seal_text(std::string_view plain, std::string_view secret, std::string_view context) {
  return base64url_encode(core::seal(plain, secret, context));
}

std::optional<std::string> unseal_text(std::string_view sealed, std::string_view secret,
                                       std::string_view context) {
  auto raw = base64url_decode(sealed);
  if (!raw) return std::nullopt;
  return core::unseal(*raw, secret, context);
}

}  // namespace hsea::identity
