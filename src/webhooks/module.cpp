// The webhooks module's registration: settings, event types, jobs, routes and metrics.
#include <curl/curl.h>
#include <fmt/format.h>

#include <stdexcept>

#include "core/config.hpp"
#include "core/settings.hpp"
#include "jobs/jobs.hpp"
#include "runtime/registrar.hpp"
#include "webhooks/internal.hpp"
#include "webhooks/webhooks.hpp"

namespace hsea::webhooks {
namespace {

State* g_state = nullptr;

const core::Section<Settings> kSettings{
    "webhooks",
    {core::bool_setting(&Settings::allow_private, "HSEA_WEBHOOK_ALLOW_PRIVATE", "false",
                        "let webhook endpoints reach loopback, private, link-local and other "
                        "non-public addresses (tests, development); never in production"),
     core::int_setting(&Settings::secret_overlap_seconds, "HSEA_WEBHOOK_SECRET_OVERLAP_SECONDS",
                       "86400", 0, 30 * 86400,
                       "after a secret rotation the old secret also signs this long"),
     core::int_setting(&Settings::disable_after_days, "HSEA_WEBHOOK_DISABLE_AFTER_DAYS", "5", 1,
                       365, "an endpoint whose deliveries all failed this long is disabled"),
     core::int_setting(&Settings::delivery_retention_days, "HSEA_WEBHOOK_DELIVERY_RETENTION_DAYS",
                       "30", 1, 3650,
                       "finished webhook deliveries and their log are kept this long")}};

void render(std::string& out) {
  const Stats& s = state().stats;
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP hsea_webhook_deliveries_total Webhook delivery attempts of this process "
                 "by outcome.\n# TYPE hsea_webhook_deliveries_total counter\n");
  for (auto [outcome, n] :
       {std::pair{"delivered", s.delivered.load()},
        std::pair{"failed_attempt", s.failed_attempt.load()}, std::pair{"failed", s.failed.load()},
        std::pair{"refused", s.refused.load()}}) {
    fmt::format_to(it, "hsea_webhook_deliveries_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
  fmt::format_to(it,
                 "# HELP hsea_webhook_endpoints_disabled_total Endpoints this process disabled "
                 "after failing continuously.\n# TYPE hsea_webhook_endpoints_disabled_total "
                 "counter\nhsea_webhook_endpoints_disabled_total {}\n",
                 s.endpoints_disabled.load());
}

}  // namespace

State& state() {
  if (g_state == nullptr) throw std::logic_error("the webhooks module is not registered");
  return *g_state;
}

void Register(runtime::Registrar& reg) {
  curl_global_init(CURL_GLOBAL_DEFAULT);  // once per process, before any thread uses libcurl
  auto s = std::make_unique<State>();
  s->settings = reg.settings(kSettings);
  s->production = reg.config().production();
  s->server_secret = reg.config().secret_key;
  g_state = &reg.process(std::move(s));

  jobs::event_type(reg, {"webhook_endpoint.created", "A webhook endpoint was registered."});
  jobs::event_type(reg, {"webhook_endpoint.updated", "A webhook endpoint was changed."});
  jobs::event_type(reg, {"webhook_endpoint.deleted", "A webhook endpoint was deleted."});
  jobs::event_type(reg, {"webhook_endpoint.secret_rotated",
                         "A webhook endpoint's signing secret was replaced (its secrets are "
                         "never sent)."});
  jobs::event_type(reg, {"webhook_endpoint.disabled",
                         "A webhook endpoint was disabled because every delivery failed for "
                         "days."});
  jobs::event_type(reg, {"webhook.test",
                         "Sent by POST /api/webhooks/endpoints/{id}/test to that endpoint only."});
  register_delivery(reg);
  register_routes(reg);
  reg.metrics(render);
}

}  // namespace hsea::webhooks
