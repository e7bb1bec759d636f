#pragma once
// The application: configuration, routes and the per-thread services, wired explicitly.
#include <memory>
#include <vector>

#include "core/config.hpp"
#include "http/router.hpp"

namespace hsea::app {

struct App {
  core::Config config;
  http::Router router;
};

// Registers every module's routes, in one visible list.
void register_modules(App& app);

// `hsea serve`: binds, prints the URL, serves until SIGINT/SIGTERM. Returns the exit code.
int serve(App& app);

}  // namespace hsea::app
