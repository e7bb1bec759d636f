// Metered usage reported to Stripe (HSEA-026): each tenant's usage of its plan's metered meters
// becomes Stripe billing meter events, exactly once. See metering.hpp and
// migrations/0025_usage_billing.sql (usage_stripe_reports).
#include <fmt/format.h>
#include <boost/json/object.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>

#include "billing/billing.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "jobs/jobs.hpp"
#include "metering/internal.hpp"
#include "metering/metering.hpp"
#include "runtime/registrar.hpp"

namespace hsea::metering {
namespace {

using boost::asio::awaitable;
using boost::json::object;

struct ReportSettings {
  int report_seconds = 3600;
  int settle_seconds = 300;
};
const core::Section<ReportSettings> kReportSettings{
    "metering.stripe",
    {core::int_setting(&ReportSettings::report_seconds, "HSEA_USAGE_REPORT_SECONDS", "3600", 1,
                       86400,
                       "how often each tenant's metered usage not yet reported is sent to Stripe "
                       "as billing meter events"),
     core::int_setting(&ReportSettings::settle_seconds, "HSEA_USAGE_REPORT_SETTLE_SECONDS", "300",
                       1, 86400,
                       "usage recorded less than this long ago waits for the next report; keep it "
                       "above the longest transaction that writes usage (HSEA_DB_STATEMENT_"
                       "TIMEOUT_MS)")}};
const ReportSettings* g_report = nullptr;
// The settle time of report_usage_now (seconds): see there.
int g_now_settle_seconds = 300;

std::atomic<std::uint64_t> g_sent{0}, g_failed{0}, g_quantity{0};

#define TENANT "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

// Across tenants (SECURITY DEFINER): who has metered usage to report, to which customer; the
// current period's start, whether usage past it is held back, and the earliest date usage of the
// current period may carry (migration 0030).
#define HSEA_DUE_COLUMNS                                         \
  "SELECT tenant_id, stripe_customer_id, meter, event_name, "    \
  "extract(epoch FROM period_start)::bigint AS period_start, "   \
  "extract(epoch FROM period_end)::bigint AS period_end, hold, " \
  "ceil(extract(epoch FROM not_before))::bigint AS not_before FROM usage_stripe_due()"
HSEA_QUERY kDue{"metering_stripe_due", HSEA_DUE_COLUMNS};
// The same for one tenant (report_usage_now).
HSEA_QUERY kDueOf{"metering_stripe_due_of", HSEA_DUE_COLUMNS " WHERE tenant_id = $1::uuid"};
#undef HSEA_DUE_COLUMNS
// A tenant's first report starts at its subscription's period start.
HSEA_QUERY kStart{"metering_stripe_start",
                  "INSERT INTO usage_stripe_reports (tenant_id, meter, reported_until) VALUES "
                  "(" TENANT ", $1, to_timestamp($2)) ON CONFLICT DO NOTHING"};
// Without a pending report: the usage recorded since the mark and before now - settle becomes
// the pending report (or, when there is none, moves the mark on). The identifier names the
// window's end, so the same report always carries the same identifier.
// A window never crosses the current period's start ($4): Stripe bills an event on the invoice of
// the period its timestamp falls in, so usage recorded before that start is a report of its own,
// ending there (dated the second before it, on the renewal invoice while that is a draft), and the
// next window starts there; nor its end ($7): usage after it waits until HSEA has applied the
// renewal (Stripe's webhook), instead of being dated in the ended period by a report made before
// HSEA knew. With `hold` ($5) no window goes past the period start at all. The
// date: the last whole second before the window's end; for usage of the current period not before
// $6, when its metered item was put on the subscription (an item bills only usage dated since).
HSEA_QUERY kPrepare{
    "metering_stripe_prepare",
    "WITH s AS (SELECT reported_until, to_timestamp($4::bigint) AS p, "
    "COALESCE(to_timestamp($7::bigint), 'infinity') AS e, "
    "now() - make_interval(secs => $2::int) AS n FROM usage_stripe_reports "
    "WHERE meter = $1 AND pending_identifier IS NULL FOR UPDATE), "
    "w AS (SELECT reported_until, p, GREATEST(reported_until, LEAST(n, CASE WHEN $5::boolean OR "
    "reported_until < p THEN p ELSE e END)) AS until FROM s), "
    "v AS (SELECT w.until, CASE WHEN w.until > w.p THEN GREATEST(ceil(extract(epoch FROM "
    "w.until))::bigint - 1, COALESCE($6::bigint, 0)) ELSE ceil(extract(epoch FROM "
    "w.until))::bigint - 1 END AS at, "
    "(SELECT COALESCE(sum(e.quantity), 0) FROM usage_events e "
    "WHERE e.meter = $1 AND e.recorded_at >= w.reported_until AND e.recorded_at < w.until)::bigint "
    "AS value FROM w) "
    "UPDATE usage_stripe_reports r SET "
    "reported_until = CASE WHEN v.value = 0 THEN v.until ELSE r.reported_until END, "
    "pending_until = CASE WHEN v.value > 0 THEN v.until END, "
    "pending_value = CASE WHEN v.value > 0 THEN v.value END, "
    "pending_at = CASE WHEN v.value > 0 THEN to_timestamp(v.at) END, "
    "pending_identifier = CASE WHEN v.value > 0 THEN $3::text || '_' || "
    "(extract(epoch FROM v.until) * 1000000)::bigint END, updated_at = now() "
    "FROM v WHERE r.meter = $1 RETURNING r.meter"};
// (A report prepared before migration 0030 has no pending_at: dated at its window's end.)
HSEA_QUERY kPending{
    "metering_stripe_pending",
    "SELECT pending_value, pending_identifier, extract(epoch FROM "
    "COALESCE(pending_at, pending_until))::bigint AS pending_at "
    "FROM usage_stripe_reports WHERE meter = $1 AND pending_identifier IS NOT NULL"};
// Stripe took the report: the mark moves to its window's end, in one statement.
HSEA_QUERY kConfirm{
    "metering_stripe_confirm",
    "UPDATE usage_stripe_reports SET reported_until = pending_until, "
    "reported_total = reported_total + pending_value, pending_until = NULL, "
    "pending_value = NULL, pending_at = NULL, pending_identifier = NULL, attempts = 0, "
    "last_error = NULL, updated_at = now() "
    "WHERE meter = $1 AND pending_identifier = $2 RETURNING reported_total"};
HSEA_QUERY kFailed{"metering_stripe_failed",
                   "UPDATE usage_stripe_reports SET attempts = attempts + 1, last_error = $3, "
                   "updated_at = now() WHERE meter = $1 AND pending_identifier = $2"};

#undef TENANT

struct Due {
  std::string tenant_id;
  std::string customer;
  std::string meter;
  std::string event_name;
  std::int64_t period_start = 0;
  bool hold = false;
  std::optional<std::int64_t> period_end;
  std::optional<std::int64_t> not_before;
};

Due due_of(const db::Result& r, int i) {
  Due d{r.text(i, "tenant_id"),  r.text(i, "stripe_customer_id"), r.text(i, "meter"),
        r.text(i, "event_name"), r.get_int(i, "period_start"),    r.get_bool(i, "hold")};
  if (!r.is_null(i, r.column("not_before"))) d.not_before = r.get_int(i, "not_before");
  if (!r.is_null(i, r.column("period_end"))) d.period_end = r.get_int(i, "period_end");
  return d;
}

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One tenant's meter: prepare (or find) the pending report of the usage recorded up to
// `settle_seconds` ago, send it, confirm it.
awaitable<void> report(Due d, int settle_seconds) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(d.tenant_id));
  co_await tx.exec(kStart, db::params(d.meter, d.period_start));
  co_await tx.exec(
      kPrepare, db::params(d.meter, settle_seconds, fmt::format("hsea_{}_{}", d.tenant_id, d.meter),
                           d.period_start, d.hold, d.not_before, d.period_end));
  db::Result pending = co_await tx.exec(kPending, db::params(d.meter));
  co_await tx.commit();
  if (pending.empty()) co_return;  // nothing used since the last report
  std::int64_t value = pending.get_int(0, "pending_value");
  std::string identifier = pending.text(0, "pending_identifier");
  // Stripe takes events of the last 35 days: an older pending report is dated now.
  std::int64_t at = std::max(pending.get_int(0, "pending_at"), now_s() - 34 * 86400);
  object params{
      {"event_name", d.event_name},
      {"payload", object{{"stripe_customer_id", d.customer}, {"value", std::to_string(value)}}},
      {"identifier", identifier},
      {"timestamp", at}};
  std::string error;
  try {
    billing::StripeReply r =
        co_await billing::stripe().post("/v1/billing/meter_events", std::move(params), identifier);
    if (!r.ok()) error = r.error_message();
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!error.empty()) {
    ++g_failed;
    log::warn("usage not reported to Stripe yet", {{"tenant_id", d.tenant_id},
                                                   {"meter", d.meter},
                                                   {"identifier", identifier},
                                                   {"error", error}});
    co_await db::pool().tenant_query(d.tenant_id, kFailed,
                                     db::params(d.meter, identifier, error.substr(0, 500)));
    co_return;
  }
  co_await db::pool().tenant_query(d.tenant_id, kConfirm, db::params(d.meter, identifier));
  ++g_sent;
  g_quantity += static_cast<std::uint64_t>(value);
}

awaitable<void> report_all() {
  if (!billing::stripe().configured()) co_return;  // no Stripe: nothing is billed by usage
  db::Result r = co_await db::pool().query(kDue);
  for (int i = 0; i < r.rows(); ++i) {
    Due d = due_of(r, i);
    try {
      co_await report(std::move(d), g_report->settle_seconds);
    } catch (const std::exception& e) {
      ++g_failed;  // one tenant's failure does not hold up the others
      log::warn("usage report failed",
                {{"tenant_id", r.text(i, "tenant_id")}, {"error", e.what()}});
    }
  }
}

}  // namespace

// The tenant's usage not yet reported, now, through the same prepare/send/confirm as the periodic
// report (so a resend is idempotent, and one running meanwhile sends the same pending report).
// Settle time: usage is written by one statement each (the api_calls flush, POST
// /api/usage/events), each a one-statement transaction under HSEA_DB_STATEMENT_TIMEOUT_MS, so a
// row recorded (`recorded_at`, its transaction's start) more than that timeout plus a margin ago
// has committed or never will: nothing before the mark is skipped. Usage of the last settle time,
// and the api_calls any thread counted but has not flushed yet (within HSEA_METERING_FLUSH_SECONDS;
// flushing this thread's would not help, as its row is recorded now), is reported by the next
// periodic report, dated then. Stripe aggregates meter events asynchronously but brings a draft
// invoice's usage up to date when it finalizes it, an hour later by default ("Configure an invoice
// finalization grace period"), so what is reported here just before the change is on its invoice.
awaitable<void> report_usage_now(std::string tenant_id) {
  if (!billing::stripe().configured()) co_return;
  db::Result r = co_await db::pool().query(kDueOf, db::params(tenant_id));
  for (int i = 0; i < r.rows(); ++i) {
    Due d = due_of(r, i);
    co_await report(std::move(d), g_now_settle_seconds);
  }
}

namespace {

// The job of billing::UsageReports::report_after: the tenant's report, once the usage recorded
// before the period's start (or the metered swap) has settled.
constexpr const char* kReportJob = "metering.stripe_report";

HSEA_QUERY kStillPending{"metering_stripe_still_pending",
                         "SELECT count(*) AS n FROM usage_stripe_reports "
                         "WHERE pending_identifier IS NOT NULL"};

// A send that failed is retried by the job (within a minute or two, inside the renewal invoice's
// grace hour) rather than left to the periodic report alone: the same identifier, counted once.
awaitable<void> report_job(jobs::JobContext& job) {
  co_await report_usage_now(job.tenant_id());
  db::Result left = co_await db::pool().tenant_query(job.tenant_id(), kStillPending);
  if (left.get_int(0, "n") > 0) throw std::runtime_error("a usage report is still pending");
}

// Enqueued in the transaction that wrote the new period (or finished the swap), delayed until the
// usage recorded before `since` has settled (at most the settle time: a `since` ahead of this
// clock, Stripe's test clocks, waits no longer). One job per tenant and `since`.
awaitable<void> enqueue_report(db::Transaction& tx, std::int64_t since) {
  std::int64_t wait =
      std::clamp<std::int64_t>(since + g_now_settle_seconds - now_s(), 0, g_now_settle_seconds);
  jobs::NewJob job = jobs::job(kReportJob);
  job.delay = std::chrono::seconds(wait);
  job.unique_key = fmt::format("usage-report:{}", since);
  co_await jobs::enqueue(tx, std::move(job));
}

}  // namespace

void register_stripe_usage(runtime::Registrar& reg) {
  const ReportSettings& s = reg.settings(kReportSettings);
  g_report = &s;
  const db::Settings& dbs = reg.settings(db::settings_section());
  // The statement timeout, rounded up, plus 2 s for the commit and the clocks; never more than
  // the periodic report's own settle time.
  constexpr int kMarginSeconds = 2;
  g_now_settle_seconds =
      std::min(s.settle_seconds, (dbs.statement_timeout_ms + 999) / 1000 + kMarginSeconds);
  billing::on_usage_reports({.report_now = &report_usage_now, .report_after = &enqueue_report});
  // Five attempts over a minute or two; a report still pending then is the periodic report's.
  jobs::define(reg, {.kind = kReportJob, .run = report_job, .max_attempts = 5});
  reg.periodic({.name = "metering-stripe-report",
                .interval = std::chrono::seconds(s.report_seconds),
                .first_delay = std::chrono::seconds(std::min(s.report_seconds, 60)),
                .once_per_cluster = true,
                .run = [] { return report_all(); }});
  reg.metrics([](std::string& out) {
    fmt::format_to(std::back_inserter(out),
                   "# HELP hsea_usage_stripe_reports_total Metered usage reports sent to Stripe "
                   "(billing meter events), by outcome; a failed one is resent later.\n"
                   "# TYPE hsea_usage_stripe_reports_total counter\n"
                   "hsea_usage_stripe_reports_total{{outcome=\"sent\"}} {}\n"
                   "hsea_usage_stripe_reports_total{{outcome=\"failed\"}} {}\n"
                   "# HELP hsea_usage_stripe_reported_quantity_total Units of metered usage "
                   "Stripe took from this process.\n"
                   "# TYPE hsea_usage_stripe_reported_quantity_total counter\n"
                   "hsea_usage_stripe_reported_quantity_total {}\n",
                   g_sent.load(), g_failed.load(), g_quantity.load());
  });
}

}  // namespace hsea::metering
