// hsea: serve | migrate | version | keys rotate | audit prune | tenants purge
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>

#include "app/app.hpp"
#include "core/build_info.hpp"
#include "core/config.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/migrations.hpp"
#include "identity/tokens.hpp"
#include "security/audit.hpp"
#include "tenancy/tenancy.hpp"

namespace {

constexpr int kConfigError = 2;

std::optional<hsea::core::Config> load_or_report(bool require_secret) {
  auto config = hsea::core::load_config(hsea::core::process_env(), require_secret);
  if (!config) {
    std::fprintf(stderr, "hsea: configuration error: %s\n", config.error().c_str());
    return std::nullopt;
  }
  return std::move(*config);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"HSEA: multi-tenant SaaS platform server"};
  cli.require_subcommand(1);
  auto* serve = cli.add_subcommand("serve", "serve the HTTP API");
  auto* migrate = cli.add_subcommand("migrate", "apply database migrations");
  auto* version = cli.add_subcommand("version", "print the version");
  auto* keys = cli.add_subcommand("keys", "manage JWT signing keys");
  auto* keys_rotate = keys->add_subcommand("rotate", "start signing with a new key");
  keys->require_subcommand(1);
  auto* audit = cli.add_subcommand("audit", "audit log maintenance");
  auto* audit_prune =
      audit->add_subcommand("prune", "delete entries older than HSEA_AUDIT_RETENTION_DAYS");
  audit->require_subcommand(1);
  auto* tenants = cli.add_subcommand("tenants", "tenant maintenance");
  auto* tenants_purge = tenants->add_subcommand(
      "purge", "remove tenants whose deletion grace period is over, with their data");
  tenants->require_subcommand(1);
  CLI11_PARSE(cli, argc, argv);

  if (version->parsed()) {
    const auto& b = hsea::core::build_info();
    std::printf("hsea %.*s (commit %.*s, built %.*s)\n", static_cast<int>(b.version.size()),
                b.version.data(), static_cast<int>(b.git_commit.size()), b.git_commit.data(),
                static_cast<int>(b.build_time.size()), b.build_time.data());
    return 0;
  }

  auto config = load_or_report(serve->parsed() || keys_rotate->parsed());
  if (!config) return kConfigError;
  hsea::log::init(config->log_level);

  if (migrate->parsed()) {
    try {
      auto report = hsea::db::migrate(config->database_admin_url, config->database_url,
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

  if (config->secret_key.empty()) {
    // Development only (load_config refuses this elsewhere). A fixed value, so that signing
    // keys sealed by one run open in the next; scripts/run generates a real one into var/.
    config->secret_key = "hsea-development-only-secret-never-use-in-production";
    std::fprintf(stderr, "hsea: HSEA_SECRET_KEY unset: using the public development secret\n");
  }

  if (keys_rotate->parsed()) {
    try {
      std::string kid = hsea::identity::KeyStore::rotate(config->database_url, config->secret_key);
      std::printf(
          "keys: new signing key %s; running servers accept its tokens at once (they reload on "
          "an unknown kid) and sign with it after a restart; restart them within the hour\n",
          kid.c_str());
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hsea keys rotate: %s\n", e.what());
      return 1;
    }
  }

  if (audit_prune->parsed()) {
    try {
      long removed =
          hsea::security::prune_audit_log(config->database_admin_url, config->audit_retention_days);
      std::printf("audit: removed %ld entries older than %d days\n", removed,
                  config->audit_retention_days);
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hsea audit prune: %s\n", e.what());
      return 1;
    }
  }

  if (tenants_purge->parsed()) {
    try {
      long removed = hsea::tenancy::purge_due_tenants(config->database_url);
      std::printf("tenants: removed %ld tenants past their deletion grace period\n", removed);
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "hsea tenants purge: %s\n", e.what());
      return 1;
    }
  }

  if (serve->parsed()) {
    std::fprintf(stderr, "hsea %s starting with:\n%s", HSEA_VERSION,
                 hsea::core::describe(*config).c_str());
    hsea::app::App app{.config = std::move(*config)};
    hsea::app::register_modules(app);
    return hsea::app::serve(app);
  }
  return 0;
}
