// db::listen_in_every_process: the one way a module keeps a LISTEN for the life of a process.
#include "db/listen_hook.hpp"

#include "db/db.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"

namespace hsea::db {

void listen_in_every_process(runtime::Registrar& reg, std::string channel,
                             std::function<void()> on_notify) {
  reg.on_start([channel = std::move(channel), on_notify = std::move(on_notify)](
                   runtime::Application& app, runtime::Runtime* rt) {
    if (rt == nullptr || app.role == runtime::Role::kCommand) return;
    rt->post(0, [channel, on_notify] {
      runtime::spawn(runtime::ThreadContext::current()->io(),
                     listen(pool().options(), channel, on_notify), channel + " listener");
    });
  });
}

}  // namespace hsea::db
