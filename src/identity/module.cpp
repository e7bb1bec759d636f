// Identity's registration: routes, middleware, signing keys, throttle, commands, tasks.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "db/listen_hook.hpp"
#include "identity/auth_cache.hpp"
#include "identity/identity.hpp"
#include "identity/module.hpp"
#include "runtime/registrar.hpp"
#include "security/pii.hpp"

namespace hsea::identity {

State& state() {
  static State s;
  return s;
}

const KeyStore& KeyRing::keys() const {
  const KeyStore* k = current_.load(std::memory_order_acquire);
  if (k == nullptr) {
    throw core::ApiError(core::ErrorCode::kServiceUnavailable,
                         "Signing keys are not loaded yet; try again shortly.")
        .retry_after(2)
        .internal("the signing keys could not be read from PostgreSQL yet");
  }
  return *k;
}

void KeyRing::set(std::unique_ptr<KeyStore> keys) {
  std::lock_guard lock(mutex_);
  owned_.push_back(std::move(keys));
  current_.store(owned_.back().get(), std::memory_order_release);
}

bool KeyRing::reload(const std::string& database_url, const std::string& secret,
                     const std::string& issuer) {
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  auto last = last_reload_.load();
  if (now - last < std::chrono::steady_clock::duration(std::chrono::seconds(10)).count() ||
      !last_reload_.compare_exchange_strong(last, now)) {
    return false;
  }
  set(KeyStore::load(database_url, secret, issuer));
  return true;
}

namespace {

HSEA_QUERY kPruneSessions{"identity_prune_sessions",
                          "SELECT sessions, refresh_tokens FROM auth_prune_expired()"};

boost::asio::awaitable<void> prune_sessions() {
  db::Result r = co_await db::pool().query(kPruneSessions);
  if (r.get_int(0, "sessions") > 0 || r.get_int(0, "refresh_tokens") > 0) {
    log::info("expired sessions and refresh tokens pruned",
              {{"sessions", r.get_int(0, "sessions")},
               {"refresh_tokens", r.get_int(0, "refresh_tokens")}});
  }
}

const core::Section<Settings> kSettings{
    "identity",
    {core::string_setting(&Settings::base_domain, "HSEA_BASE_DOMAIN", "(unset)",
                          "tenants are also reachable at <slug>.<base domain>, e.g. "
                          "app.example.com"),
     core::int_setting(&Settings::login_failures_per_account, "HSEA_LOGIN_MAX_FAILURES_PER_ACCOUNT",
                       "100", 1, 1000000, "failed sign-ins per account per hour before 429"),
     core::int_setting(&Settings::login_failures_per_ip, "HSEA_LOGIN_MAX_FAILURES_PER_IP", "1000",
                       1, 1000000, "failed sign-ins per client IP per hour before 429"),
     core::int_setting(&Settings::signups_per_ip_per_hour, "HSEA_SIGNUPS_PER_IP_PER_HOUR", "20", 0,
                       1000000,
                       "sign-ups per client address (IPv6: per /64) per hour before 429; 0 turns "
                       "it off"),
     core::int_setting(&Settings::refresh_token_days, "HSEA_REFRESH_TOKEN_DAYS", "30", 1, 3650,
                       "refresh token and session lifetime"),
     core::int_setting(&Settings::access_token_seconds, "HSEA_ACCESS_TOKEN_SECONDS", "900", 5,
                       86400,
                       "lifetime of an access token, and of a session cookie's access between "
                       "refreshes (the web UI refreshes on the 401)"),
     core::int_setting(&Settings::api_key_rotation_grace_seconds,
                       "HSEA_API_KEY_ROTATION_GRACE_SECONDS", "86400", 0, 31536000,
                       "how long a rotated API key keeps working"),
     core::int_setting(&Settings::usage_flush_seconds, "HSEA_USAGE_FLUSH_SECONDS", "10", 1, 3600,
                       "how often each thread adds its API-key request counts to the database"),
     core::int_setting(&Settings::email_verification_hours, "HSEA_EMAIL_VERIFICATION_HOURS", "48",
                       1, 8760, "lifetime of an e-mail verification link"),
     core::int_setting(&Settings::password_reset_minutes, "HSEA_PASSWORD_RESET_MINUTES", "60", 5,
                       1440, "lifetime of a password reset link"),
     core::int_setting(&Settings::email_change_hours, "HSEA_EMAIL_CHANGE_HOURS", "24", 1, 720,
                       "lifetime of the confirmation link of an e-mail change"),
     core::int_setting(&Settings::account_mails_per_hour, "HSEA_ACCOUNT_MAILS_PER_HOUR", "5", 0,
                       1000000,
                       "verification resends and e-mail changes per user, password resets per "
                       "address, per hour before 429; 0 turns it off")}};

// Retries until PostgreSQL answers, so the server can start before its database. The load is
// blocking: it runs on the runtime's I/O pool.
boost::asio::awaitable<void> load_keys_until_loaded() {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  const core::Config& c = config();
  const db::Settings& d = database();
  for (int attempt = 1; !state().keys.loaded(); ++attempt) {
    try {
      auto load = [&c, &d] { return KeyStore::load(d.database_url, c.secret_key, c.public_url); };
      state().keys.set(co_await runtime::io_pool().run(std::move(load)));
      log::info("signing keys loaded", {{"attempt", attempt}});
      co_return;
    } catch (const std::exception& e) {
      if (attempt % 30 == 0) log::warn("still cannot load signing keys", {{"error", e.what()}});
    }
    timer.expires_after(std::chrono::seconds(2));
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
}

}  // namespace

void Register(runtime::Registrar& reg) {
  const Settings& settings = reg.settings(kSettings);
  const db::Settings& database = reg.settings(db::settings_section());
  State& s = state();
  s.config = &reg.config();
  s.settings = &settings;
  s.database = &database;
  s.throttle = std::make_unique<LoginThrottle>(settings.login_failures_per_account,
                                               settings.login_failures_per_ip);
  // The user's address (with its blind index) and name, sealed under the user's key
  // (user_pii.hpp), for rotation, which also seals and indexes rows from before sealing.
  security::pii::register_sealed_column({.table = "users",
                                         .id_column = "id",
                                         .column = "email",
                                         .purpose = "users.email",
                                         .owner_column = "id",
                                         .owner_is_tenant = false,
                                         .index_column = "email_index"});
  security::pii::register_sealed_column({.table = "users",
                                         .id_column = "id",
                                         .column = "name",
                                         .purpose = "users.name",
                                         .owner_column = "id",
                                         .owner_is_tenant = false});
  // The address an account token was mailed to or changes to (account_flows.cpp).
  security::pii::register_sealed_column({.table = "account_tokens",
                                         .id_column = "token_hash",
                                         .column = "email",
                                         .purpose = "account_tokens.email",
                                         .owner_column = "user_id",
                                         .owner_is_tenant = false});
  // Sessions' client data, sealed under the user's key (open_session), for rotation.
  for (const char* column : {"ip", "user_agent"}) {
    security::pii::register_sealed_column({.table = "sessions",
                                           .id_column = "id",
                                           .column = column,
                                           .purpose = std::string("sessions.") + column,
                                           .owner_column = "user_id",
                                           .owner_is_tenant = false});
  }

  reg.middleware({.name = "tenant-resolution",
                  .stage = http::Stage::kTenant,
                  .around = resolve_tenant,
                  .when = names_tenant});
  reg.middleware({.name = "authentication",
                  .stage = http::Stage::kIdentity,
                  .around = authenticate,
                  .when = needs_authentication});
  reg.middleware({.name = "authorization", .stage = http::Stage::kAdmission, .before = authorize});
  register_auth_routes(reg);
  register_api_key_routes(reg);
  register_mfa_routes(reg);
  register_account_routes(reg);
  register_staff_mail(reg);

  // Revocations on other nodes empty this process's auth caches (auth_cache.hpp); the listener
  // also empties them after every reconnect (what it may have missed).
  db::listen_in_every_process(reg, "hsea_auth", invalidate_local_auth_cache);
  // Keys load before listening when PostgreSQL is up; otherwise in the background.
  reg.on_start([](runtime::Application& app, runtime::Runtime* rt) {
    if (state().keys.loaded() || rt == nullptr) return;
    const core::Config& cfg = app.config;
    try {
      state().keys.set(
          KeyStore::load(identity::database().database_url, cfg.secret_key, cfg.public_url));
    } catch (const std::exception& e) {
      log::warn("cannot load signing keys yet; retrying in the background", {{"error", e.what()}});
      runtime::spawn(*rt->io_contexts().front(), load_keys_until_loaded(), "signing-key load");
    }
  });
  // Expired refresh tokens and long-gone sessions, daily, by one node of the cluster.
  reg.periodic({.name = "session-prune",
                .interval = std::chrono::hours(24),
                .once_per_cluster = true,
                .run = []() -> boost::asio::awaitable<void> { return prune_sessions(); }});
  reg.periodic({.name = "api-key-usage-flush",
                .interval = std::chrono::seconds(settings.usage_flush_seconds),
                .first_delay = std::chrono::seconds(settings.usage_flush_seconds),
                .every_thread = true,
                .run = [] { return flush_api_key_usage(); }});

  reg.command({.path = {"keys", "rotate"},
               .help = "start signing with a new key",
               .needs_secret = true,
               .run = [&database](const core::Config& cfg) {
                 try {
                   std::string kid = KeyStore::rotate(database.database_url, cfg.secret_key);
                   std::printf(
                       "keys: new signing key %s; running servers accept its tokens at once "
                       "(they reload on an unknown kid) and sign with it after a restart; "
                       "restart them within the hour\n",
                       kid.c_str());
                   return 0;
                 } catch (const std::exception& e) {
                   std::fprintf(stderr, "hsea keys rotate: %s\n", e.what());
                   return 1;
                 }
               }});
  // Platform staff (operators): the operator API (/api/admin/...) and no rate limits. Through
  // the admin connection: the server's role can only read its own row.
  const std::string* admin_url = &reg.settings(db::settings_section()).database_admin_url;
  for (bool grant : {true, false}) {
    runtime::CommandOption user{.name = "user_id", .help = "the user's id", .required = true};
    reg.command(
        {.path = {"staff", grant ? "grant" : "revoke"},
         .help = grant ? "make a user platform staff" : "take platform staff away from a user",
         .options = {user},
         .run = [grant, user = user.value, admin_url](const core::Config&) {
           try {
             db::BlockingConnection conn(*admin_url, "hsea staff");
             db::Result r = conn.exec(grant ? "INSERT INTO platform_staff (user_id) "
                                              "SELECT id FROM users WHERE id = $1::uuid "
                                              "ON CONFLICT DO NOTHING RETURNING user_id"
                                            : "DELETE FROM platform_staff WHERE user_id = $1::uuid "
                                              "RETURNING user_id",
                                      {*user});
             std::printf("staff: %s %s\n", user->c_str(),
                         r.empty() ? "unchanged" : (grant ? "granted" : "revoked"));
             return 0;
           } catch (const std::exception& e) {
             std::fprintf(stderr, "hsea staff: %s\n", e.what());
             return 1;
           }
         }});
  }
}

}  // namespace hsea::identity
