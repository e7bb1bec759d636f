// The billing module's registration: settings, event types, routes, jobs, metrics.
#include <fmt/format.h>

#include <memory>
#include <optional>
#include <stdexcept>

#include "billing/billing.hpp"
#include "billing/internal.hpp"
#include "core/config.hpp"
#include "core/settings.hpp"
#include "jobs/jobs.hpp"
#include "ratelimit/ratelimit.hpp"
#include "runtime/registrar.hpp"

namespace hsea::billing {
namespace {

State* g_state = nullptr;

std::optional<std::string> check_api_base(std::string& v) {
  while (!v.empty() && v.back() == '/') v.pop_back();
  if (!v.starts_with("https://") && !v.starts_with("http://")) {
    return std::string("must be an http(s) URL");
  }
  return std::nullopt;
}

std::optional<std::string> check_plan_id(std::string& v) {
  if (!v.empty() && !std::islower(static_cast<unsigned char>(v[0]))) {
    return std::string("must be a plan id (a lower-case letter first)");
  }
  for (char c : v) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
      return std::string("must be a plan id (lower case, digits, - and _)");
    }
  }
  return std::nullopt;
}

std::optional<std::string> check_secret_key(std::string& v) {
  if (!v.empty() && !v.starts_with("sk_") && !v.starts_with("rk_")) {
    return std::string("must be a Stripe secret or restricted key (sk_... or rk_...)");
  }
  return std::nullopt;
}

std::optional<std::string> check_webhook_secrets(std::string& v) {
  std::string_view rest = v;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string_view one = rest.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    if (!one.starts_with("whsec_")) {
      return std::string("must be Stripe webhook secrets (whsec_...), comma-separated");
    }
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "billing",
    {core::string_setting(&Settings::stripe_secret_key, "HSEA_STRIPE_SECRET_KEY", "(unset)",
                          "Stripe's secret API key; unset: billing endpoints answer 503 "
                          "billing_not_configured and every tenant has the free plan",
                          check_secret_key, core::Show::kSecret),
     core::string_setting(&Settings::stripe_webhook_secret, "HSEA_STRIPE_WEBHOOK_SECRET", "(unset)",
                          "the signing secret(s) of Stripe's webhooks (whsec_...), "
                          "comma-separated while rotating",
                          check_webhook_secrets, core::Show::kSecret),
     core::string_setting(&Settings::stripe_api_base, "HSEA_STRIPE_API_BASE",
                          "https://api.stripe.com", "Stripe's API (tests: the emulator)",
                          check_api_base, core::Show::kUrl),
     core::int_setting(&Settings::stripe_max_retries, "HSEA_STRIPE_MAX_RETRIES", "3", 0, 10,
                       "retries of a Stripe request after a network error, 409, 429 or 5xx"),
     core::string_setting(&Settings::trial_plan, "HSEA_BILLING_TRIAL_PLAN", "(unset)",
                          "the plan a new tenant tries (status trialing); unset: the free plan",
                          check_plan_id),
     core::int_setting(&Settings::trial_days, "HSEA_BILLING_TRIAL_DAYS", "14", 0, 365,
                       "the trial's length when HSEA_BILLING_TRIAL_PLAN is set")}};

void render(std::string& out) {
  const State& s = state();
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP hsea_stripe_events_total Stripe webhook requests of this process by "
                 "outcome.\n# TYPE hsea_stripe_events_total counter\n");
  for (auto [outcome, n] : {std::pair{"stored", s.events_received.load()},
                            std::pair{"duplicate", s.events_duplicate.load()},
                            std::pair{"refused", s.events_refused.load()}}) {
    fmt::format_to(it, "hsea_stripe_events_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
}

// The rate limiter's plan rule: the plan's requests_per_second and burst, from this thread's
// entitlements cache (a query only on a miss). A plan without them, or entitlements that cannot
// be read, leave the limiter's default.
boost::asio::awaitable<std::optional<ratelimit::Rate>> plan_rate(std::string tenant_id) {
  std::shared_ptr<const Entitlement> e;
  try {
    e = co_await Entitlements::of(std::move(tenant_id));
  } catch (const std::exception&) {
    co_return std::nullopt;
  }
  std::optional<std::int64_t> rps = e ? e->limit("requests_per_second") : std::nullopt;
  if (!rps || *rps <= 0) co_return std::nullopt;
  co_return ratelimit::Rate{*rps, 1, e->limit("burst").value_or(0)};
}

}  // namespace

State& state() {
  if (g_state == nullptr) throw std::logic_error("the billing module is not registered");
  return *g_state;
}

void Register(runtime::Registrar& reg) {
  auto s = std::make_unique<State>();
  s->settings = reg.settings(kSettings);
  std::string_view secrets = s->settings.stripe_webhook_secret;
  while (!secrets.empty()) {
    auto comma = secrets.find(',');
    std::string_view one = secrets.substr(0, comma);
    while (!one.empty() && one.front() == ' ') one.remove_prefix(1);
    while (!one.empty() && one.back() == ' ') one.remove_suffix(1);
    if (!one.empty()) s->webhook_secrets.emplace_back(one);
    secrets = comma == std::string_view::npos ? std::string_view() : secrets.substr(comma + 1);
  }
  s->public_url = reg.config().public_url;
  g_state = &reg.process(std::move(s));

  jobs::event_type(reg, {"subscription.created", "The tenant's subscription started."});
  jobs::event_type(reg, {"subscription.updated",
                         "The subscription's plan, interval, status or period changed."});
  jobs::event_type(reg, {"subscription.canceled",
                         "The subscription was canceled, or set to end with its period."});
  jobs::event_type(
      reg, {"subscription.reactivated", "A subscription set to end with its period was kept."});
  jobs::event_type(reg, {"billing.payment_method_attached",
                         "A payment method was added to the tenant's Stripe customer."});
  register_plans(reg);
  register_subscriptions(reg);
  register_intake(reg);
  register_entitlements(reg);
  ratelimit::set_plan_rates(plan_rate);
  reg.metrics(render);
}

}  // namespace hsea::billing
