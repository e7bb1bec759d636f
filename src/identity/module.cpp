// Identity's registration: routes, middleware, signing keys, throttle, commands, tasks.
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdio>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "identity/identity.hpp"
#include "identity/module.hpp"
#include "runtime/registrar.hpp"

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

// Retries until PostgreSQL answers, so the server can start before its database. The load is
// blocking: it runs on the runtime's I/O pool.
boost::asio::awaitable<void> load_keys_until_loaded() {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
  const core::Config& c = config();
  for (int attempt = 1; !state().keys.loaded(); ++attempt) {
    try {
      auto load = [&c] { return KeyStore::load(c.database_url, c.secret_key, c.public_url); };
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
  const core::Config& c = reg.config();
  State& s = state();
  s.config = &c;
  s.throttle =
      std::make_unique<LoginThrottle>(c.login_failures_per_account, c.login_failures_per_ip);

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

  // Keys load before listening when PostgreSQL is up; otherwise in the background.
  reg.on_start([](runtime::Application& app, runtime::Runtime* rt) {
    if (state().keys.loaded() || rt == nullptr) return;
    const core::Config& cfg = app.config;
    try {
      state().keys.set(KeyStore::load(cfg.database_url, cfg.secret_key, cfg.public_url));
    } catch (const std::exception& e) {
      log::warn("cannot load signing keys yet; retrying in the background", {{"error", e.what()}});
      runtime::spawn(*rt->io_contexts().front(), load_keys_until_loaded(), "signing-key load");
    }
  });
  reg.periodic({.name = "api-key-usage-flush",
                .interval = std::chrono::seconds(c.usage_flush_seconds),
                .first_delay = std::chrono::seconds(c.usage_flush_seconds),
                .every_thread = true,
                .run = [] { return flush_api_key_usage(); }});

  reg.command({.path = {"keys", "rotate"},
               .help = "start signing with a new key",
               .needs_secret = true,
               .run = [](const core::Config& cfg) {
                 try {
                   std::string kid = KeyStore::rotate(cfg.database_url, cfg.secret_key);
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
}

}  // namespace hsea::identity
