#pragma once
// The application: the list of modules, and the two ways to run them.
namespace hsea::runtime {
class Registrar;
struct Application;
}  // namespace hsea::runtime

namespace hsea::app {

// Every module, in one visible list (the order is the order of their middleware within a
// stage and of their routes).
void register_modules(runtime::Registrar& registrar);

// `hsea serve`: the runtime with the HTTP server on it; serves until SIGINT/SIGTERM.
int serve(runtime::Application& app);
// `hsea worker`: the same runtime and periodic tasks, without HTTP.
int work(runtime::Application& app);

}  // namespace hsea::app
