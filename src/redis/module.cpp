// The Redis module's registration: a client per I/O thread when HSEA_REDIS_URL is set.
#include "core/settings.hpp"
#include "redis/client.hpp"
#include "redis/tenant_cache.hpp"
#include "runtime/registrar.hpp"

namespace hsea::redis {
namespace {

// The client's sockets and timers belong to its thread's io_context, so the client is
// destroyed on that thread when the runtime stops (the holder outlives the io_context).
struct ThreadClient {
  std::unique_ptr<Client> client;
};

std::optional<std::string> check_redis_url(std::string& v) {
  if (v.empty()) return std::nullopt;
  try {
    parse_url(v);
  } catch (const std::exception& e) {
    return std::string("must be redis://[:password@]host[:port][/db]: ") + e.what();
  }
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "redis",
    {core::string_setting(&Settings::url, "HSEA_REDIS_URL", "(unset: in-process fallbacks)",
                          "redis://[:password@]host:port[/db]", check_redis_url, core::Show::kUrl),
     core::int_setting(&Settings::timeout_ms, "HSEA_REDIS_TIMEOUT_MS", "1000", 1, 600000,
                       "deadline of one Redis command"),
     core::int_setting(
         &Settings::tenant_cache_ttl_seconds, "HSEA_TENANT_CACHE_TTL_SECONDS", "300", 1, 86400 * 30,
         "tenant cache entries live this long unless the tenant configures another")}};

}  // namespace

Client* client() {
  runtime::ThreadContext* t = runtime::ThreadContext::current();
  ThreadClient* holder = t != nullptr ? t->find<ThreadClient>() : nullptr;
  return holder != nullptr ? holder->client.get() : nullptr;
}

void Register(runtime::Registrar& reg) {
  const Settings& settings = reg.settings(kSettings);
  set_default_ttl(std::chrono::seconds(settings.tenant_cache_ttl_seconds));
  reg.metrics(render_cache_metrics);
  if (settings.url.empty()) return;
  reg.per_thread<ThreadClient>(
      "redis client",
      [&settings](runtime::ThreadContext& t) {
        auto holder = std::make_unique<ThreadClient>();
        holder->client = std::make_unique<Client>(t.io(), settings.url,
                                                  std::chrono::milliseconds(settings.timeout_ms));
        holder->client->start();
        return holder;
      },
      [](ThreadClient& holder) { holder.client.reset(); });
}

}  // namespace hsea::redis
