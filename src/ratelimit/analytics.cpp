// HSEA-035: counts of limited requests per tenant, rule and key kind, aggregated in process (a
// map per I/O thread, merged every few seconds) and written once per flush as one row per
// tenant, hour, rule and key kind; alerts and the anomaly detector run at the flush.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/config.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "jobs/jobs.hpp"
#include "ratelimit/analytics.hpp"
#include "ratelimit/internal.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"

namespace hsea::ratelimit {
namespace {

using boost::asio::awaitable;

HSEA_QUERY kAddStats{
    "rate_limit_stats_add",
    "INSERT INTO rate_limit_stats (tenant_id, hour, rule, key_kind, limited, requests) "
    "SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid, date_trunc('hour', now()), "
    "r, k, l, q FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS u(r, k, l, q) "
    "ON CONFLICT (tenant_id, hour, rule, key_kind) DO UPDATE "
    "SET limited = rate_limit_stats.limited + EXCLUDED.limited, "
    "requests = rate_limit_stats.requests + EXCLUDED.requests"};

HSEA_QUERY kAlertedTenant{"rate_limit_alert_tenant", "SELECT name, slug FROM tenants"};
std::string g_public_url;

struct Cell {
  std::int64_t limited = 0;
  std::int64_t requests = 0;
};
// tenant -> "rule\nkind" -> counts
using Counts = std::unordered_map<std::string, std::map<std::string, Cell>>;

thread_local Counts t_counts;

std::string now_text() {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", fmt::gmtime(std::time(nullptr)));
}

struct Totals {
  std::mutex mutex;
  Counts pending;                               // since the last flush
  std::map<std::string, std::int64_t> limited;  // "tenant\nrule\nkind" -> since start
  std::unordered_map<std::string, AnomalyDetector> detectors;
  std::map<std::string, std::int64_t> anomalies;  // tenant -> flagged intervals
  std::vector<Anomaly> recent;                    // the last flagged, newest last
};
Totals* g_totals = nullptr;

Totals& totals() {
  static Totals fallback;
  return g_totals != nullptr ? *g_totals : fallback;
}

awaitable<void> merge_thread_counts() {
  if (t_counts.empty()) co_return;
  Counts mine;
  mine.swap(t_counts);
  Totals& t = totals();
  std::lock_guard lock(t.mutex);
  for (auto& [tenant, cells] : mine) {
    auto& into = t.pending[tenant];
    for (auto& [rk, cell] : cells) {
      into[rk].limited += cell.limited;
      into[rk].requests += cell.requests;
      if (cell.limited > 0) t.limited[tenant + '\n' + rk] += cell.limited;
    }
  }
}

std::string array_literal(const std::vector<std::string>& items) {
  std::string out = "{";
  for (const auto& i : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char c : i) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

awaitable<void> write_tenant(std::string tenant, std::map<std::string, Cell> cells,
                             std::int64_t limited, std::int64_t threshold) {
  std::vector<std::string> rules, kinds, lim, req;
  for (const auto& [rk, cell] : cells) {
    auto nl = rk.find('\n');
    rules.push_back(rk.substr(0, nl));
    kinds.push_back(rk.substr(nl + 1));
    lim.push_back(std::to_string(cell.limited));
    req.push_back(std::to_string(cell.requests));
  }
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant));
  co_await tx.exec(kAddStats, db::params(array_literal(rules), array_literal(kinds),
                                         array_literal(lim), array_literal(req)));
  if (limited >= threshold) {
    // The alert: a log line for the operator's log pipeline, and an event in the tenant's
    // outbox (its webhooks and any subscriber see it) in the transaction of the counts.
    boost::json::array by_rule;
    for (const auto& [rk, cell] : cells) {
      if (cell.limited == 0) continue;
      auto nl = rk.find('\n');
      by_rule.push_back(boost::json::object{
          {"rule", rk.substr(0, nl)}, {"key", rk.substr(nl + 1)}, {"limited", cell.limited}});
    }
    log::warn("rate limits: tenant limited above the alert threshold",
              {{"tenant_id", tenant}, {"limited", limited}, {"threshold", threshold}});
    boost::json::object alert_data{
        {"limited", limited}, {"threshold", threshold}, {"rules", std::move(by_rule)}};
    security::Actor system{security::Actor::Kind::kSystem, "ratelimit"};
    std::string request_id, type = "rate_limit.exceeded";
    co_await jobs::emit(tx, system, request_id, type, boost::json::serialize(alert_data));
    // And a mail to the operator: identity's `staff.notify` job mails every platform staff
    // member (src/identity/staff_mail.cpp); at most once an hour per tenant however many nodes
    // alert, the hour being the job's unique key.
    db::Result alerted = co_await tx.exec(kAlertedTenant);
    if (!alerted.empty()) {
      boost::json::object mail = std::move(alert_data);
      mail["alerted"] = boost::json::object{
          {"id", tenant}, {"name", alerted.text(0, "name")}, {"slug", alerted.text(0, "slug")}};
      mail["link"] = g_public_url + "/api/admin/rate-limits/report";
      mail["button"] = "Open the report";
      jobs::NewJob alert = jobs::job(
          "staff.notify", boost::json::serialize(boost::json::object{
                              {"template", "rate_limit_alert"}, {"data", std::move(mail)}}));
      alert.unique_key =
          fmt::format("rate_limit_alert:{:%Y-%m-%dT%H}", fmt::gmtime(std::time(nullptr)));
      co_await jobs::enqueue(tx, std::move(alert));
    }
  }
  co_await tx.commit();
}

awaitable<void> flush() {
  Counts pending;
  std::vector<std::pair<std::string, double>> rates;
  double seconds = settings().flush_seconds;
  {
    Totals& t = totals();
    std::lock_guard lock(t.mutex);
    pending.swap(t.pending);
    // Every tenant seen before is observed each interval, silent ones with 0.
    for (auto& [tenant, cells] : pending) t.detectors.try_emplace(tenant);
    for (auto& [tenant, detector] : t.detectors) {
      double requests = 0;
      if (auto it = pending.find(tenant); it != pending.end()) {
        for (auto& [rk, cell] : it->second) requests += static_cast<double>(cell.requests);
      }
      double rate = requests / seconds;
      double baseline = detector.mean();
      if (detector.observe(rate)) {
        ++t.anomalies[tenant];
        t.recent.push_back({tenant, rate, baseline, now_text()});
        if (t.recent.size() > 100) t.recent.erase(t.recent.begin());
        rates.emplace_back(tenant, rate);
        log::warn("rate limits: request rate left the tenant's baseline",
                  {{"tenant_id", tenant},
                   {"rate_per_second", fmt::format("{:.2f}", rate)},
                   {"baseline_per_second", fmt::format("{:.2f}", baseline)}});
      }
    }
  }
  for (auto& [tenant, cells] : pending) {
    std::int64_t limited = 0;
    for (auto& [rk, cell] : cells) limited += cell.limited;
    try {
      co_await write_tenant(tenant, std::move(cells), limited, settings().alert_threshold);
    } catch (const std::exception& e) {
      log::warn("rate limits: counts not written", {{"tenant_id", tenant}, {"error", e.what()}});
    }
  }
}

}  // namespace

void count(const http::RequestContext& ctx, const Resolved& rule, std::string_view kind,
           bool limited) {
  if (ctx.tenant_id.empty()) return;  // requests without a tenant are in the access log only
  std::string rk = rule.rule;
  rk += '\n';
  rk += kind;
  Cell& cell = t_counts[ctx.tenant_id][rk];
  ++cell.requests;
  if (limited) ++cell.limited;
}

std::vector<Anomaly> recent_anomalies() {
  Totals& t = totals();
  std::lock_guard lock(t.mutex);
  return t.recent;
}

awaitable<void> flush_now() {
  co_await merge_thread_counts();
  co_await flush();
}

void register_analytics(runtime::Registrar& reg) {
  g_totals = &reg.process(std::make_unique<Totals>());
  g_public_url = reg.config().public_url;
  jobs::event_type(reg, {"rate_limit.exceeded",
                         "The tenant's requests were refused by rate limits more often than the "
                         "alert threshold within one interval."});
  reg.periodic({.name = "rate-limit-merge",
                .interval = std::chrono::seconds(2),
                .first_delay = std::chrono::seconds(2),
                .every_thread = true,
                .run = merge_thread_counts});
  reg.periodic({.name = "rate-limit-flush",
                .interval = std::chrono::seconds(settings().flush_seconds),
                .first_delay = std::chrono::seconds(settings().flush_seconds),
                .run = flush});
  reg.metrics([](std::string& out) {
    Totals& t = totals();
    std::lock_guard lock(t.mutex);
    out += "# HELP hsea_rate_limited_total Requests refused by rate limits.\n";
    out += "# TYPE hsea_rate_limited_total counter\n";
    for (const auto& [k, n] : t.limited) {
      auto a = k.find('\n'), b = k.find('\n', a + 1);
      fmt::format_to(std::back_inserter(out),
                     "hsea_rate_limited_total{{tenant=\"{}\",rule=\"{}\",key=\"{}\"}} {}\n",
                     k.substr(0, a), k.substr(a + 1, b - a - 1), k.substr(b + 1), n);
    }
    out +=
        "# HELP hsea_rate_limit_anomalies_total Intervals whose request rate left the tenant's "
        "baseline.\n";
    out += "# TYPE hsea_rate_limit_anomalies_total counter\n";
    for (const auto& [tenant, n] : t.anomalies) {
      fmt::format_to(std::back_inserter(out),
                     "hsea_rate_limit_anomalies_total{{tenant=\"{}\"}} {}\n", tenant, n);
    }
  });
}

}  // namespace hsea::ratelimit
