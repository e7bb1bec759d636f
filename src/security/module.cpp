// The security module's registration: security headers, CORS, body validation, data-access
// audit, refusal counters, the audit-log API and its retention.
#include "billing/policies.hpp"
#include "core/config.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "http/problem.hpp"
#include "identity/access.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"
#include "security/cors.hpp"
#include "security/pii.hpp"
#include "security/refusals.hpp"
#include "security/security.hpp"
#include "security/steps.hpp"

namespace hsea::security {

boost::asio::awaitable<http::Response> list_audit_logs(http::RequestContext& ctx);
boost::asio::awaitable<http::Response> export_audit_logs(http::RequestContext& ctx);

namespace {
const core::Config* g_config = nullptr;  // HSTS only when clients reach us over https

std::optional<std::string> check_previous_secret(std::string& v) {
  if (!v.empty() && v.size() < 32) return "must be at least 32 bytes, like HSEA_SECRET_KEY";
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "security",
    {core::int_setting(&Settings::audit_retention_days, "HSEA_AUDIT_RETENTION_DAYS", "365", 1,
                       36500,
                       "audit entries older than this are pruned (daily, and by `hsea audit "
                       "prune`)"),
     core::string_setting(&Settings::previous_secret_key, "HSEA_PREVIOUS_SECRET_KEY", "",
                          "the HSEA_SECRET_KEY a new one replaced, read only by `hsea keys "
                          "rotate-data` to re-wrap the data keys it wrapped",
                          check_previous_secret, core::Show::kSecret),
     core::int_setting(&Settings::pii_key_cache_seconds, "HSEA_PII_KEY_CACHE_SECONDS", "60", 1,
                       3600,
                       "how long a server seals with an owner's cached current data key; `hsea "
                       "keys rotate-data` waits this long plus 5 s after retiring keys, so set "
                       "it alike for the servers and the command")}};
}  // namespace

void security_headers(http::RequestContext&, http::Response& response) {
  // An API answers JSON; nothing it returns should load scripts or be framed. The web UI's
  // static files get their own policy where they are served.
  if (response.header("content-security-policy").empty()) {
    response.set_header("content-security-policy",
                        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'");
  }
  response.set_header("x-frame-options", "DENY");
  response.set_header("x-content-type-options", "nosniff");
  response.set_header("referrer-policy", "no-referrer");
  if (g_config != nullptr && g_config->public_url_is_https()) {
    response.set_header("strict-transport-security", "max-age=63072000; includeSubDomains");
  }
}

namespace {
boost::asio::awaitable<void> apply_retention(int days) {
  std::int64_t removed = co_await prune(db::pool(), days);
  log::info("audit log pruned", {{"removed", removed}, {"retention_days", days}});
}
}  // namespace

void Register(runtime::Registrar& reg) {
  const Settings& settings = reg.settings(kSettings);
  const db::Settings& database = reg.settings(db::settings_section());
  g_config = &reg.config();
  const std::chrono::seconds key_cache(settings.pii_key_cache_seconds);
  if (!reg.config().secret_key.empty()) pii::configure(reg.config().secret_key, key_cache);
  // The audit log's personal data, sealed under the tenant's key (audit.cpp), for rotation.
  pii::register_sealed_column({.table = "audit_logs",
                               .id_column = "id",
                               .column = "ip",
                               .purpose = "audit_logs.ip",
                               .owner_column = "tenant_id",
                               .owner_is_tenant = true});
  pii::register_sealed_column({.table = "audit_logs",
                               .id_column = "id",
                               .column = "user_agent",
                               .purpose = "audit_logs.user_agent",
                               .owner_column = "tenant_id",
                               .owner_is_tenant = true});
  // HSEA-042: CSP, HSTS (https only), X-Frame-Options, X-Content-Type-Options, Referrer-Policy.
  reg.middleware(
      {.name = "security-headers", .stage = http::Stage::kEdge, .after = security_headers});
  // HSEA-043: after the security headers (their `after` runs on its answers too, preflights and
  // refusals included), before body limits and tenant resolution. Only requests with Origin.
  reg.middleware({.name = "cors", .stage = http::Stage::kEdge, .around = cors, .when = has_origin});
  reg.metrics(append_refusal_metrics);
  reg.middleware({.name = "data-access-audit",
                  .stage = http::Stage::kAroundHandler,
                  .around = record_access,
                  .when = declares_access_event});
  reg.middleware(
      {.name = "body-validation", .stage = http::Stage::kAroundHandler, .before = validate_body});
  const identity::Access audit_readers{
      .authenticated = true, .tenant = true, .roles = {"owner", "admin"}, .scopes = {"audit:read"}};
  reg.route({.method = http::Method::kGet,
             .path = "/api/audit-logs",
             .handler = list_audit_logs,
             .policies = http::Policies(audit_readers)});
  // The same readers, on plans with the audit_export feature (Pro, Enterprise): 402
  // plan_required otherwise (billing's entitlements step).
  reg.route({.method = http::Method::kGet,
             .path = "/api/audit-logs/export",
             .handler = export_audit_logs,
             .policies = http::Policies(audit_readers, billing::Feature{"audit_export"})});
  int days = settings.audit_retention_days;
  reg.periodic({.name = "audit-retention",
                .interval = std::chrono::hours(24),
                .first_delay = std::chrono::minutes(1),
                .once_per_cluster = true,
                .run = [days] { return apply_retention(days); }});
  reg.command({.path = {"keys", "rotate-data"},
               .help = "re-wrap the data keys under HSEA_SECRET_KEY, then seal all personal data "
                       "again under new ones (servers keep running)",
               .needs_secret = true,
               .run = [&database, &settings, key_cache](const core::Config& config) {
                 try {
                   pii::configure(config.secret_key, key_cache);
                   pii::RotationReport r =
                       pii::rotate_data(database.database_admin_url, settings.previous_secret_key,
                                        key_cache + std::chrono::seconds(5));
                   std::printf(
                       "keys: %ld data keys re-wrapped, %ld retired, %ld values sealed "
                       "again, %ld retired keys deleted\n",
                       r.keys_rewrapped, r.keys_retired, r.values_resealed, r.keys_deleted);
                   return 0;
                 } catch (const std::exception& e) {
                   std::fprintf(stderr, "hsea keys rotate-data: %s\n", e.what());
                   return 1;
                 }
               }});
  reg.command({.path = {"audit", "prune"},
               .help = "delete entries older than HSEA_AUDIT_RETENTION_DAYS",
               .run = [&database, days](const core::Config&) {
                 try {
                   long removed = prune_audit_log(database.database_admin_url, days);
                   std::printf("audit: removed %ld entries older than %d days\n", removed, days);
                   return 0;
                 } catch (const std::exception& e) {
                   std::fprintf(stderr, "hsea audit prune: %s\n", e.what());
                   return 1;
                 }
               }});
}

}  // namespace hsea::security
