#pragma once
// A LISTEN kept for the life of every serving or working process (db::listen, db.hpp).
#include <functional>
#include <string>

namespace hsea::runtime {
class Registrar;
}

namespace hsea::db {

// Registers one listener per serving or working process (not for commands), started on its
// first I/O thread with that thread's pool options; `on_notify` runs on that thread for every
// notification and after every (re)connect.
void listen_in_every_process(runtime::Registrar& reg, std::string channel,
                             std::function<void()> on_notify);

}  // namespace hsea::db
