#pragma once
// The one way a module plugs in. Each module's entry is `void Register(runtime::Registrar&)`:
// through it the module declares its settings section, its routes (with typed policies), its
// middleware at a named stage, its per-thread and process-wide services, its periodic tasks, its
// CLI subcommands and its metric sources. src/app/ only lists the modules; nothing here knows
// any of them.
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/settings.hpp"
#include "http/middleware.hpp"
#include "http/router.hpp"
#include "runtime/runtime.hpp"

namespace hsea::core {
struct Config;
}

namespace hsea::runtime {

// An option of a command: "--status" (named) or "id" (positional), read into *value.
struct CommandOption {
  std::string name;
  std::string help;
  std::shared_ptr<std::string> value = std::make_shared<std::string>();
  bool required = false;
};

// A subcommand of `hsea`: path {"tenants", "purge"} is `hsea tenants purge`.
struct Command {
  std::vector<std::string> path;
  std::string help;
  bool needs_secret = false;  // HSEA_SECRET_KEY must be set (or the development secret apply)
  std::vector<CommandOption> options;  // their values are set before run
  // The exit code. Module settings: capture what the module read (reg.settings) at registration.
  std::function<int(const core::Config&)> run;
};

// Work repeated every `interval`, first after `first_delay`, on an I/O thread of every
// runtime (serve and worker). A failure is logged and the task runs again next period.
// once_per_cluster: of all nodes sharing the database, one runs each period: the jobs module
// takes such tasks over at start and runs each period as one scheduled job (retried when it
// fails); first_delay does not apply to them.
struct PeriodicTask {
  std::string name;
  std::chrono::seconds interval{3600};
  std::chrono::seconds first_delay{60};
  bool once_per_cluster = false;
  bool every_thread = false;  // runs on each I/O thread (flushing per-thread counters)
  std::function<boost::asio::awaitable<void>()> run;
};

using MetricSource = std::function<void(std::string& out)>;  // appends exposition text

// What this process runs: `hsea serve`, `hsea worker` or a one-shot command.
enum class Role { kServe, kWorker, kCommand };

// Everything the modules declared, ready to run.
struct Application {
  Application(const core::Config& c, core::EnvLookup env);
  Application(Application&&) = default;

  const core::Config& config;
  Role role = Role::kCommand;       // set before the start hooks run
  core::SettingsRegistry settings;  // core's section, then each module's, in registration order
  http::Router router;
  std::vector<http::Middleware> middleware;
  std::vector<http::AfterResponse> after_response;
  std::vector<ThreadServiceSpec> thread_services;
  std::vector<std::shared_ptr<void>> process_services;  // owned here, destroyed last
  std::vector<PeriodicTask> tasks;
  std::vector<Command> commands;
  std::vector<MetricSource> metric_sources;
  std::vector<std::function<void(Application&, Runtime*)>> start_hooks;

  // The middleware ordered by stage, with the chain's own steps.
  http::Chain chain() const;
  // Runs every start hook (after the runtime started, before serving); `runtime` is null where
  // none runs (unit tests of the chain).
  void started(Runtime* runtime);
  // Starts every periodic task on the runtime's threads. Throws std::logic_error when a
  // once-per-cluster task is left (no module took it over).
  void start_tasks(Runtime& runtime) const;
  // Appends every metric source's text.
  void render_metrics(std::string& out) const;
};

class Registrar {
 public:
  // `env` is where the modules' sections are read from.
  explicit Registrar(const core::Config& config, core::EnvLookup env = core::process_env());

  const core::Config& config() const { return app_.config; }

  // Reads a settings section now: a bad value throws core::ConfigError "VAR: reason" (main: exit
  // 2 before anything starts). A section is read once; a module that asks for another module's
  // (db::settings_section()) gets the same values. They live as long as the application, and
  // `hsea serve` prints them with every other section's, secrets masked.
  template <typename S>
  const S& settings(const core::Section<S>& section) {
    return app_.settings.load(section);
  }

  void route(http::Route route) { app_.router.add(std::move(route)); }
  void middleware(http::Middleware step) { app_.middleware.push_back(step); }
  void after_response(http::AfterResponse hook) { app_.after_response.push_back(hook); }

  // A service each I/O thread gets its own instance of, made on that thread.
  template <typename T>
  void per_thread(std::string name, std::function<std::unique_ptr<T>(ThreadContext&)> make,
                  std::function<void(T&)> stop = {}) {
    ThreadServiceSpec spec;
    spec.name = std::move(name);
    spec.type = http::type_key<T>();
    spec.make = [make = std::move(make)](ThreadContext& t) -> std::shared_ptr<void> {
      return std::shared_ptr<T>(make(t));
    };
    if (stop) spec.stop = [stop = std::move(stop)](void* p) { stop(*static_cast<T*>(p)); };
    app_.thread_services.push_back(std::move(spec));
  }

  // A process-wide service (thread-safe), owned by the application; the reference stays valid
  // for the application's life.
  template <typename T>
  T& process(std::unique_ptr<T> service) {
    std::shared_ptr<T> shared(std::move(service));
    T& ref = *shared;
    app_.process_services.push_back(std::move(shared));
    return ref;
  }

  void periodic(PeriodicTask task) { app_.tasks.push_back(std::move(task)); }
  void command(Command command) { app_.commands.push_back(std::move(command)); }
  void metrics(MetricSource source) { app_.metric_sources.push_back(std::move(source)); }
  // Runs once the runtime has started (the router and every service exist).
  void on_start(std::function<void(Application&, Runtime*)> hook) {
    app_.start_hooks.push_back(std::move(hook));
  }

  Application finish() && { return std::move(app_); }

 private:
  Application app_;
};

// The calling I/O thread's runtime work pools: CPU work (Argon2id, PDF) and blocking I/O
// (libcurl, DNS). Throws std::logic_error off an I/O thread.
core::WorkPool& cpu_pool();
core::WorkPool& io_pool();

}  // namespace hsea::runtime
