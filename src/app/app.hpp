#pragma once
// The application: the list of modules, and the two ways to run them.
#include "core/settings.hpp"

namespace hsea::core {
struct Config;
}
namespace hsea::runtime {
class Registrar;
struct Application;
}  // namespace hsea::runtime

namespace hsea::app {

// Every module, in one visible list (the order is the order of their middleware within a
// stage and of their routes).
void register_modules(runtime::Registrar& registrar);

// Registers every module on `config` (which must outlive the application), each reading its
// settings section from `env`, then derives what depends on several sections: the
// HSEA_MAX_CONNECTIONS default (core) needs the pool size (db). A bad value of any variable
// throws core::ConfigError naming it.
runtime::Application configure(core::Config& config, const core::EnvLookup& env);

// `hsea serve`: the runtime with the HTTP server on it; serves until SIGINT/SIGTERM.
int serve(runtime::Application& app);
// `hsea worker`: the same runtime and periodic tasks, without HTTP.
int work(runtime::Application& app);

}  // namespace hsea::app
