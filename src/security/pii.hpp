#pragma once
// Personal data at rest (HSEA-047; docs/encryption.md). E-mail addresses, names, IP addresses
// and user agents are stored sealed: XChaCha20-Poly1305 under the data key of their owner (a
// tenant, or a user for a user's own rows), as text
//   pii1.<data key id>.<base64url(nonce || ciphertext)>
// with the column's purpose ("users.email") authenticated, so a value never opens in another
// column. Data keys are random, kept in data_keys only wrapped under a key derived from
// HSEA_SECRET_KEY, and cached unwrapped in the process. Look-ups by value use blind_index().
//
//   std::string sealed = co_await pii::seal(ctx.db, pii::user_owner(id), "users.email", email);
//   co_await pii::load_keys(ctx.db, sealed_values_of_the_result);       // once per result, one
//   round trip at most std::optional<std::string> email = pii::open("users.email", sealed);
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hsea::db {
class BlockingConnection;
class Pool;
class Transaction;
}  // namespace hsea::db

namespace hsea::security::pii {

// Whose data key seals a value: exactly one of the two is set.
struct Owner {
  std::string tenant_id;
  std::string user_id;
};
inline Owner tenant_owner(std::string id) { return Owner{std::move(id), {}}; }
inline Owner user_owner(std::string id) { return Owner{{}, std::move(id)}; }

// How long a server keeps sealing with an owner's current key before asking again (the default
// of HSEA_PII_KEY_CACHE_SECONDS).
constexpr std::chrono::seconds kCurrentKeyCacheSeconds{60};

// The server secret keys are wrapped with and blind indexes keyed by, and how long an owner's
// current key is cached (`hsea keys rotate-data` waits that long after retiring keys, so every
// server and the command must agree). Called once at start by the security module (and by
// tests); before it, sealing throws std::logic_error.
void configure(std::string_view server_secret,
               std::chrono::seconds current_key_cache = kCurrentKeyCacheSeconds);

// True for text in the sealed format (a value stored before encryption was turned on is not).
bool is_sealed(std::string_view text);
// The data key id a sealed value names ("" when not sealed).
std::string_view key_id_of(std::string_view sealed);

// Seals `plain` under the owner's current data key, creating the key on first use (its own
// committed statement: a key nobody used is harmless).
boost::asio::awaitable<std::string> seal(db::Pool& pool, Owner owner, std::string_view purpose,
                                         std::string_view plain);
// The same inside a transaction, for what the transaction writes: an owner created in it (a
// sign-up's tenant and user) gets its key in it, and a key created there becomes the cached
// current key only once committed (a rolled-back key must never seal anything). Empty text
// stays empty: it holds nothing personal, and "no value" stays visible (the audit log's
// anonymisation blanks ip and user_agent).
boost::asio::awaitable<std::string> seal(db::Transaction& tx, Owner owner, std::string_view purpose,
                                         std::string_view plain);
// Makes the keys of these sealed values available to open(): at most one round trip, none when
// every key is cached. Values that are not sealed are ignored.
boost::asio::awaitable<void> load_keys(db::Pool& pool, std::vector<std::string> sealed_values);
// The same inside a transaction (no second connection while it holds one; sees keys it made).
boost::asio::awaitable<void> load_keys(db::Transaction& tx, std::vector<std::string> sealed_values);
// The plaintext; a value that is not sealed is returned as it is (data written before
// encryption), nullopt when its key is gone (a purged tenant, a deleted user) or it does not
// authenticate. Its key must be loaded (load_keys), else nullopt too.
std::optional<std::string> open(std::string_view purpose, std::string_view sealed);

// A keyed, deterministic digest of a normalised value for equality look-ups (users.email_index)
// that reveals nothing without the server secret: HMAC-SHA256 under a key derived from it,
// over the purpose and the value, as 64 hex digits.
std::string blind_index(std::string_view purpose, std::string_view normalized_value);

// --- For `hsea keys rotate-data` and tests (blocking, never on an I/O thread).

// Seals with the owner's current key through a blocking connection.
std::string seal_blocking(db::BlockingConnection& conn, const Owner& owner,
                          std::string_view purpose, std::string_view plain);
// Loads the keys of these values through a blocking connection.
void load_keys_blocking(db::BlockingConnection& conn, const std::vector<std::string>& sealed);
// Forgets cached keys (after a rotation, or in tests after keys were deleted).
void forget_cached_keys();

// A column holding sealed values, registered by the module that owns it, so that rotation
// reaches every one. `owner_column` names the tenant_id or user_id column whose key seals it.
struct SealedColumn {
  std::string table;
  std::string id_column;  // the primary key, to update row by row
  std::string column;
  std::string purpose;
  std::string owner_column;
  bool owner_is_tenant = true;
  // A blind index column of the same value (users.email_index), filled when a plaintext value
  // from before sealing is sealed: blind_index(purpose, the value in ASCII lower case).
  std::string index_column = {};
  // Rows whose owner_column is NULL are sealed under the key of the user this column names
  // (mail_messages: a platform message, no tenant's, under its recipient's key).
  std::string user_owner_column = {};
};
void register_sealed_column(SealedColumn column);
const std::vector<SealedColumn>& sealed_columns();

struct RotationReport {
  long keys_retired = 0;
  long keys_rewrapped = 0;
  long values_resealed = 0;  // including plaintext values sealed for the first time
  long keys_deleted = 0;
};
// `hsea keys rotate-data`, through the owner role (admin_url), without stopping the servers:
//  1. every key is re-wrapped under the current secret (keys that open only under
//     `previous_secret`, the one HSEA_SECRET_KEY replaced, included);
//  2. every current key is retired; servers take new keys for new data once their cache of
//     current keys expires (`cache_wait`), which the command waits out;
//  3. every registered column's values under retired keys (and plaintext values) are sealed
//     again under their owner's new key, in batches;
//  4. retired keys that no value names any more are deleted.
RotationReport rotate_data(const std::string& admin_url, std::string_view previous_secret,
                           std::chrono::seconds cache_wait);

}  // namespace hsea::security::pii
