// Sealed personal data: data keys, their cache, XChaCha20-Poly1305, blind indexes, rotation.
#include "security/pii.hpp"

#include <fmt/format.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include "core/crypto.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "security/pii_internal.hpp"

namespace hsea::security::pii {
namespace {

using Key = std::array<unsigned char, crypto_aead_xchacha20poly1305_ietf_KEYBYTES>;
constexpr std::string_view kPrefix = "pii1.";
constexpr std::string_view kWrapContext = "hsea pii data key v1";
constexpr std::string_view kIndexContext = "hsea pii blind index v1";
constexpr std::size_t kIdLength = 36;  // a uuid's text

HSEA_QUERY kCurrentKey{"pii_current_key",
                       "SELECT id, wrapped FROM pii_current_key($1::uuid, $2::uuid, $3)"};
// In a transaction: created_here says the key was made by this very transaction (migration 0016).
HSEA_QUERY kCurrentKeyInTx{
    "pii_current_key_in_tx",
    "SELECT id, wrapped, created_here FROM pii_current_key_in_tx($1::uuid, $2::uuid, $3)"};
HSEA_QUERY kKeysById{"pii_data_keys", "SELECT id, wrapped FROM pii_data_keys($1::uuid[])"};

struct CurrentKey {
  std::string id;
  std::chrono::steady_clock::time_point fetched;
};

// Process-wide: unwrapped keys by id, and each owner's current key id for a while. Keys are
// wiped when forgotten.
struct Cache {
  std::shared_mutex mutex;
  std::string secret;
  std::string index_key;
  std::chrono::seconds current_ttl = kCurrentKeyCacheSeconds;
  std::unordered_map<std::string, Key> keys;
  std::unordered_map<std::string, CurrentKey> current;  // "t:<id>" or "u:<id>"

  ~Cache() { wipe(); }
  void wipe() {
    for (auto& [id, key] : keys) sodium_memzero(key.data(), key.size());
    keys.clear();
    current.clear();
  }
};

Cache& cache() {
  static Cache c;
  return c;
}

std::string owner_key(const Owner& owner) {
  return owner.tenant_id.empty() ? "u:" + owner.user_id : "t:" + owner.tenant_id;
}

std::string base64url(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::optional<std::string> from_base64url(std::string_view text) {
  std::string out(text.size(), '\0');
  std::size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), text.data(),
                        text.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

std::string wrap(const Key& key, std::string_view secret) {
  return base64url(
      core::seal(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()), secret,
                 kWrapContext));
}

std::optional<Key> unwrap(std::string_view wrapped, std::string_view secret) {
  auto bytes = from_base64url(wrapped);
  if (!bytes) return std::nullopt;
  auto plain = core::unseal(*bytes, secret, kWrapContext);
  if (!plain || plain->size() != Key().size()) return std::nullopt;
  Key key;
  std::copy(plain->begin(), plain->end(), key.begin());
  sodium_memzero(plain->data(), plain->size());
  return key;
}

const std::string& secret() {
  Cache& c = cache();
  if (c.secret.empty()) throw std::logic_error("pii::configure was not called");
  return c.secret;
}

Key fresh_key() {
  Key key;
  crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
  return key;
}

// Remembers a key fetched from data_keys; a key that does not unwrap is left out (open() then
// gives nullopt for its values).
void remember(std::string_view id, std::string_view wrapped) {
  auto key = unwrap(wrapped, secret());
  if (!key) return;
  std::unique_lock lock(cache().mutex);
  cache().keys.insert_or_assign(std::string(id), *key);
}

std::optional<Key> cached(std::string_view id) {
  std::shared_lock lock(cache().mutex);
  auto it = cache().keys.find(std::string(id));
  if (it == cache().keys.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> cached_current(const Owner& owner) {
  std::shared_lock lock(cache().mutex);
  auto it = cache().current.find(owner_key(owner));
  if (it == cache().current.end() ||
      std::chrono::steady_clock::now() - it->second.fetched > cache().current_ttl) {
    return std::nullopt;
  }
  return it->second.id;
}

void remember_current(const Owner& owner, std::string_view id, std::string_view wrapped) {
  remember(id, wrapped);
  std::unique_lock lock(cache().mutex);
  cache().current.insert_or_assign(owner_key(owner),
                                   CurrentKey{std::string(id), std::chrono::steady_clock::now()});
}

struct IdKey {
  std::string id;
  Key key;
};

// The owner's current key when the cache has it.
std::optional<IdKey> cached_current_key(const Owner& owner) {
  std::optional<std::string> id = cached_current(owner);
  if (!id) return std::nullopt;
  std::optional<Key> key = cached(*id);
  if (!key) return std::nullopt;
  return IdKey{std::move(*id), *key};
}

// A fresh key, wrapped for pii_current_key (the plain key is wiped at once: the database's
// answer says which key won, and that one is unwrapped from its row).
std::string fresh_wrapped_key() {
  Key fresh = fresh_key();
  std::string wrapped = wrap(fresh, secret());
  sodium_memzero(fresh.data(), fresh.size());
  return wrapped;
}

// The key pii_current_key answered, cached (as the owner's current one when `current`).
IdKey adopt_key(const Owner& owner, const db::Result& r, bool current) {
  if (r.empty()) throw std::runtime_error("no data key for the owner");
  std::string id(r.get(0, "id"));
  if (current) {
    remember_current(owner, id, r.get(0, "wrapped"));
  } else {
    remember(id, r.get(0, "wrapped"));
  }
  std::optional<Key> key = cached(id);
  if (!key) throw std::runtime_error("the data key does not open under HSEA_SECRET_KEY");
  return IdKey{std::move(id), *key};
}

void remember_all(const db::Result& r) {
  for (int i = 0; i < r.rows(); ++i) remember(r.get(i, "id"), r.get(i, "wrapped"));
}

std::string seal_with(std::string_view id, const Key& key, std::string_view purpose,
                      std::string_view plain) {
  std::string box(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + plain.size() +
                      crypto_aead_xchacha20poly1305_ietf_ABYTES,
                  '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(box.data());
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long len = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &len,
      reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
      reinterpret_cast<const unsigned char*>(purpose.data()), purpose.size(), nullptr, nonce,
      key.data());
  return fmt::format("{}{}.{}", kPrefix, id, base64url(box));
}

std::vector<std::string> missing_key_ids(const std::vector<std::string>& sealed_values) {
  std::vector<std::string> missing;
  std::shared_lock lock(cache().mutex);
  for (const auto& v : sealed_values) {
    if (!is_sealed(v)) continue;
    std::string id(key_id_of(v));
    if (!cache().keys.contains(id) &&
        std::find(missing.begin(), missing.end(), id) == missing.end()) {
      missing.push_back(std::move(id));
    }
  }
  return missing;
}

std::string uuid_array(const std::vector<std::string>& ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + ids[i];
  return out + "}";
}

std::optional<std::string> opt(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>(s);
}

}  // namespace

namespace detail {
bool rewrap_if_needed(db::BlockingConnection& conn, std::string_view id, std::string_view wrapped,
                      std::string_view previous_secret) {
  if (unwrap(wrapped, secret())) return false;
  if (previous_secret.empty()) {
    throw std::runtime_error(fmt::format(
        "data key {} does not open under HSEA_SECRET_KEY; set HSEA_PREVIOUS_SECRET_KEY to the "
        "secret it replaced",
        id));
  }
  auto key = unwrap(wrapped, previous_secret);
  if (!key) {
    throw std::runtime_error(fmt::format(
        "data key {} opens neither under HSEA_SECRET_KEY nor HSEA_PREVIOUS_SECRET_KEY", id));
  }
  conn.exec("UPDATE data_keys SET wrapped = $2 WHERE id = $1",
            {std::string(id), wrap(*key, secret())});
  sodium_memzero(key->data(), key->size());
  return true;
}
}  // namespace detail

void configure(std::string_view server_secret, std::chrono::seconds current_key_cache) {
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  Cache& c = cache();
  std::unique_lock lock(c.mutex);
  c.current_ttl = current_key_cache;
  if (c.secret == server_secret) return;
  c.wipe();
  c.secret = std::string(server_secret);
  std::array<unsigned char, 32> k{};
  crypto_generichash(k.data(), k.size(), reinterpret_cast<const unsigned char*>(c.secret.data()),
                     c.secret.size(), reinterpret_cast<const unsigned char*>(kIndexContext.data()),
                     kIndexContext.size());
  c.index_key.assign(reinterpret_cast<const char*>(k.data()), k.size());
  sodium_memzero(k.data(), k.size());
}

bool is_sealed(std::string_view text) {
  return text.size() > kPrefix.size() + kIdLength + 1 && text.starts_with(kPrefix) &&
         text[kPrefix.size() + kIdLength] == '.';
}

std::string_view key_id_of(std::string_view sealed) {
  if (!is_sealed(sealed)) return {};
  return sealed.substr(kPrefix.size(), kIdLength);
}

boost::asio::awaitable<std::string> seal(db::Pool& pool, Owner owner, std::string_view purpose,
                                         std::string_view plain) {
  std::string purpose_copy(purpose), plain_copy(plain);  // the caller's views may not outlive
  std::optional<IdKey> k = cached_current_key(owner);
  if (!k) {
    db::Result r = co_await pool.query(
        kCurrentKey, db::params(opt(owner.tenant_id), opt(owner.user_id), fresh_wrapped_key()));
    k = adopt_key(owner, r, true);
  }
  co_return seal_with(k->id, k->key, purpose_copy, plain_copy);
}

boost::asio::awaitable<std::string> seal(db::Transaction& tx, Owner owner, std::string_view purpose,
                                         std::string_view plain) {
  std::string purpose_copy(purpose), plain_copy(plain);  // the caller's views may not outlive
  if (plain_copy.empty()) co_return std::string();
  std::optional<IdKey> k = cached_current_key(owner);
  if (!k) {
    db::Result r = co_await tx.exec(
        kCurrentKeyInTx, db::params(opt(owner.tenant_id), opt(owner.user_id), fresh_wrapped_key()));
    // A key this transaction created opens what it seals, and becomes current only once seen
    // committed.
    k = adopt_key(owner, r, !r.empty() && !r.get_bool(0, "created_here"));
  }
  co_return seal_with(k->id, k->key, purpose_copy, plain_copy);
}

boost::asio::awaitable<void> load_keys(db::Pool& pool, std::vector<std::string> sealed_values) {
  std::vector<std::string> missing = missing_key_ids(sealed_values);
  if (missing.empty()) co_return;
  db::Result r = co_await pool.query(kKeysById, db::params(uuid_array(missing)));
  remember_all(r);
}

boost::asio::awaitable<void> load_keys(db::Transaction& tx,
                                       std::vector<std::string> sealed_values) {
  std::vector<std::string> missing = missing_key_ids(sealed_values);
  if (missing.empty()) co_return;
  db::Result r = co_await tx.exec(kKeysById, db::params(uuid_array(missing)));
  remember_all(r);
}

std::optional<std::string> open(std::string_view purpose, std::string_view sealed) {
  if (!is_sealed(sealed)) return std::string(sealed);
  std::optional<Key> key = cached(key_id_of(sealed));
  if (!key) return std::nullopt;
  auto box = from_base64url(sealed.substr(kPrefix.size() + kIdLength + 1));
  constexpr std::size_t kOverhead =
      crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES;
  if (!box || box->size() < kOverhead) return std::nullopt;
  const auto* nonce = reinterpret_cast<const unsigned char*>(box->data());
  std::string plain(box->size() - kOverhead, '\0');
  unsigned long long len = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &len, nullptr,
          nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
          box->size() - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
          reinterpret_cast<const unsigned char*>(purpose.data()), purpose.size(), nonce,
          key->data()) != 0) {
    return std::nullopt;
  }
  plain.resize(len);
  return plain;
}

std::string blind_index(std::string_view purpose, std::string_view normalized_value) {
  std::string key;
  {
    std::shared_lock lock(cache().mutex);
    key = cache().index_key;
  }
  if (key.empty()) throw std::logic_error("pii::configure was not called");
  std::string data(purpose);
  data.push_back('\0');
  data.append(normalized_value);
  std::string mac = core::hmac_sha256(key, data);
  std::string hex(mac.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(mac.data()),
                 mac.size());
  hex.pop_back();
  return hex;
}

std::string seal_blocking(db::BlockingConnection& conn, const Owner& owner,
                          std::string_view purpose, std::string_view plain) {
  std::optional<IdKey> k = cached_current_key(owner);
  if (!k) {
    db::Result r = conn.exec(
        kCurrentKey, db::params(opt(owner.tenant_id), opt(owner.user_id), fresh_wrapped_key()));
    k = adopt_key(owner, r, true);
  }
  return seal_with(k->id, k->key, purpose, plain);
}

void load_keys_blocking(db::BlockingConnection& conn, const std::vector<std::string>& sealed) {
  std::vector<std::string> missing = missing_key_ids(sealed);
  if (missing.empty()) return;
  db::Result r = conn.exec(kKeysById, db::params(uuid_array(missing)));
  remember_all(r);
}

void forget_cached_keys() {
  std::unique_lock lock(cache().mutex);
  for (auto& [id, key] : cache().keys) sodium_memzero(key.data(), key.size());
  cache().keys.clear();
  cache().current.clear();
}

}  // namespace hsea::security::pii
