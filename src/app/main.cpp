// hsea: serve | worker | migrate | version, and every module's subcommands (keys rotate,
// audit prune, tenants purge, ...).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <map>

#include "app/app.hpp"
#include "core/build_info.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "db/migrations.hpp"
#include "runtime/registrar.hpp"

namespace {

constexpr int kConfigError = 2;

int print_version() {
  const auto& b = hsea::core::build_info();
  std::printf("hsea %.*s (commit %.*s, built %.*s)\n", static_cast<int>(b.version.size()),
              b.version.data(), static_cast<int>(b.git_commit.size()), b.git_commit.data(),
              static_cast<int>(b.build_time.size()), b.build_time.data());
  return 0;
}

int migrate(const hsea::db::Settings& settings) {
  try {
    auto report = hsea::db::migrate(settings.database_admin_url, settings.database_url,
                                    hsea::db::embedded_migrations());
    if (report.role_created) std::printf("migrate: created the application role\n");
    for (const auto& name : report.applied) std::printf("migrate: applied %s\n", name.c_str());
    if (report.applied.empty()) std::printf("migrate: up to date\n");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hsea migrate: %s\n", e.what());
    return 1;
  }
}

// Commands that sign or seal need the secret; load_config says why it is missing.
bool secret_available(hsea::core::Config& config) {
  auto checked = hsea::core::load_config(hsea::core::process_env(), true);
  if (!checked) {
    std::fprintf(stderr, "hsea: configuration error: %s\n", checked.error().c_str());
    return false;
  }
  if (config.secret_key.empty()) {
    // Development only (load_config refuses this elsewhere). A fixed value, so that signing
    // keys sealed by one run open in the next; scripts/run generates a real one into var/.
    config.secret_key = "hsea-development-only-secret-never-use-in-production";
    std::fprintf(stderr, "hsea: HSEA_SECRET_KEY unset: using the public development secret\n");
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "version") == 0) return print_version();

  auto loaded = hsea::core::load_config(hsea::core::process_env(), false);
  if (!loaded) {
    std::fprintf(stderr, "hsea: configuration error: %s\n", loaded.error().c_str());
    return kConfigError;
  }
  hsea::core::Config config = std::move(*loaded);  // modules keep a reference: never moved
  hsea::log::init(config.log_level);

  // Every module reads its settings section here, before anything starts.
  std::optional<hsea::runtime::Application> app;
  try {
    app.emplace(hsea::app::configure(config, hsea::core::process_env()));
  } catch (const hsea::core::ConfigError& e) {
    std::fprintf(stderr, "hsea: configuration error: %s\n", e.what());
    return kConfigError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hsea: %s\n", e.what());
    return 1;
  }

  CLI::App cli{"HSEA: multi-tenant SaaS platform server"};
  cli.require_subcommand(1);
  auto* serve = cli.add_subcommand("serve", "serve the HTTP API (and run periodic tasks)");
  auto* worker = cli.add_subcommand("worker", "run periodic tasks without serving HTTP");
  auto* migrate_cmd = cli.add_subcommand("migrate", "apply database migrations");
  cli.add_subcommand("version", "print the version");
  // Module commands, grouped by their first word ("keys rotate", "keys ...").
  std::map<std::string, CLI::App*> groups;
  std::vector<std::pair<CLI::App*, const hsea::runtime::Command*>> module_commands;
  for (const auto& command : app->commands) {
    CLI::App* parent = &cli;
    for (std::size_t i = 0; i + 1 < command.path.size(); ++i) {
      std::string key =
          fmt::format("{}", fmt::join(command.path.begin(), command.path.begin() + i + 1, " "));
      auto it = groups.find(key);
      if (it == groups.end()) {
        CLI::App* group = parent->add_subcommand(command.path[i], command.path[i] + " commands");
        group->require_subcommand(1);
        it = groups.emplace(key, group).first;
      }
      parent = it->second;
    }
    CLI::App* sub = parent->add_subcommand(command.path.back(), command.help);
    for (const auto& option : command.options) {
      CLI::Option* o = sub->add_option(option.name, *option.value, option.help);
      if (option.required) o->required();
    }
    module_commands.emplace_back(sub, &command);
  }
  CLI11_PARSE(cli, argc, argv);

  if (cli.got_subcommand("version")) return print_version();
  if (migrate_cmd->parsed()) return migrate(app->settings.get<hsea::db::Settings>());
  for (auto& [sub, command] : module_commands) {
    if (!sub->parsed()) continue;
    if (command->needs_secret && !secret_available(config)) return kConfigError;
    return command->run(config);
  }
  if (serve->parsed() || worker->parsed()) {
    if (!secret_available(config)) return kConfigError;
    std::fprintf(stderr, "hsea %s starting with:\n%s", HSEA_VERSION,
                 app->settings.describe().c_str());
    return serve->parsed() ? hsea::app::serve(*app) : hsea::app::work(*app);
  }
  return 0;
}
