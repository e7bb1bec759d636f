// The Redis module's registration: a client per I/O thread when HSEA_REDIS_URL is set.
#include "core/config.hpp"
#include "redis/client.hpp"
#include "runtime/registrar.hpp"

namespace hsea::redis {
namespace {

// The client's sockets and timers belong to its thread's io_context, so the client is
// destroyed on that thread when the runtime stops (the holder outlives the io_context).
struct ThreadClient {
  std::unique_ptr<Client> client;
};

}  // namespace

Client* client() {
  runtime::ThreadContext* t = runtime::ThreadContext::current();
  ThreadClient* holder = t != nullptr ? t->find<ThreadClient>() : nullptr;
  return holder != nullptr ? holder->client.get() : nullptr;
}

void Register(runtime::Registrar& reg) {
  const core::Config& config = reg.config();
  if (config.redis_url.empty()) return;
  reg.per_thread<ThreadClient>(
      "redis client",
      [&config](runtime::ThreadContext& t) {
        auto holder = std::make_unique<ThreadClient>();
        holder->client = std::make_unique<Client>(
            t.io(), config.redis_url, std::chrono::milliseconds(config.redis_timeout_ms));
        holder->client->start();
        return holder;
      },
      [](ThreadClient& holder) { holder.client.reset(); });
}

}  // namespace hsea::redis
