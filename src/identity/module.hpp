#pragma once
// Identity's own state and the pieces its files share (internal to the module).
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "http/middleware.hpp"
#include "identity/identity.hpp"
#include "identity/throttle.hpp"
#include "identity/tokens.hpp"

namespace hsea::core {
struct Config;
}
namespace hsea::db {
struct Settings;
class Transaction;
}  // namespace hsea::db
namespace hsea::runtime {
class Registrar;
}

namespace hsea::identity {

// The signing keys, once loaded (the server starts even while PostgreSQL is down; token
// endpoints answer 503 until then). Thread-safe.
class KeyRing {
 public:
  const KeyStore& keys() const;  // throws ApiError 503 until loaded
  bool loaded() const { return current_.load(std::memory_order_acquire) != nullptr; }
  void set(std::unique_ptr<KeyStore> keys);
  // After `hsea keys rotate`, other nodes sign with a key this one has not loaded: reload the
  // keys (blocking; at most once per 10 s) when a token names an unknown kid.
  bool reload(const std::string& database_url, const std::string& secret,
              const std::string& issuer);

 private:
  std::mutex mutex_;
  std::vector<std::unique_ptr<KeyStore>> owned_;  // earlier stores stay: a request may use one
  std::atomic<const KeyStore*> current_{nullptr};
  std::atomic<std::chrono::steady_clock::rep> last_reload_{0};
};

struct State {
  const core::Config* config = nullptr;
  const Settings* settings = nullptr;      // identity's section
  const db::Settings* database = nullptr;  // the database URL (signing keys)
  KeyRing keys;
  std::unique_ptr<LoginThrottle> throttle;
  SignupThrottle signups;
};
State& state();
inline const core::Config& config() { return *state().config; }
inline const Settings& settings() { return *state().settings; }
inline const db::Settings& database() { return *state().database; }

// Middleware (authenticate.cpp).
boost::asio::awaitable<http::Response> resolve_tenant(http::RequestContext& ctx, http::Next next);
boost::asio::awaitable<http::Response> authenticate(http::RequestContext& ctx, http::Next next);
// When those steps apply (the route's Access): public routes pass them over without a frame.
bool names_tenant(const http::RequestContext& ctx);
bool needs_authentication(const http::RequestContext& ctx);
std::optional<http::Response> authorize(http::RequestContext& ctx);

// Routes of each file.
void register_auth_routes(runtime::Registrar& registrar);
void register_api_key_routes(runtime::Registrar& registrar);
void register_mfa_routes(runtime::Registrar& registrar);
void register_account_routes(runtime::Registrar& registrar);  // account_flows.cpp
void register_staff_mail(runtime::Registrar& registrar);      // staff_mail.cpp

// Mails a new e-mail verification link to the user (account_flows.cpp), inside `tx`, whose
// scope names the user (and the tenant whose branding the mail carries; none: a platform mail).
boost::asio::awaitable<void> send_email_verification(db::Transaction& tx, std::string user_id,
                                                     std::string email, std::string name,
                                                     bool platform);

// A second factor of the user (mfa.cpp): a current TOTP code not used before (its time step is
// recorded in `tx`, so it is never accepted twice) or an unused recovery code (spent in `tx`).
boost::asio::awaitable<bool> check_second_factor(db::Transaction& tx, const std::string& user_id,
                                                 std::optional<std::string> code,
                                                 std::optional<std::string> recovery_code);

// Per-key usage (HSEA-048): each I/O thread counts the requests of each API key and adds them
// to api_keys.request_count every HSEA_USAGE_FLUSH_SECONDS (the last interval is lost on a
// crash: counts are approximate by that much).
void count_api_key_use(const std::string& tenant_id, const std::string& key_id);
boost::asio::awaitable<void> flush_api_key_usage();

}  // namespace hsea::identity
