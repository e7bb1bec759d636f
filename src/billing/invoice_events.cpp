// Stripe's invoice events and dunning (HSEA-028, HSEA-030): invoice.finalized, invoice.paid and
// invoice.payment_failed re-read the invoice from Stripe (events come late, twice and out of
// order) and mirror it; a first failure starts the tenant's dunning (billing_dunning): the
// billing contacts are mailed, retries are queued on HSEA_BILLING_RETRY_DAYS and the suspension
// announced after HSEA_BILLING_GRACE_DAYS; a payment ends it at once. POST /api/invoices/{id}/pay
// retries now.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <chrono>
#include <ctime>

#include "billing/billing.hpp"
#include "billing/dunning.hpp"
#include "billing/internal.hpp"
#include "billing/invoice_pdf.hpp"
#include "core/config.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "identity/access.hpp"
#include "identity/user_pii.hpp"
#include "jobs/jobs.hpp"
#include "mail/mail.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using boost::json::array;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

HSEA_QUERY kContacts{"billing_contacts",
                     "SELECT u.email, u.name FROM memberships m JOIN users u ON u.id = m.user_id "
                     "WHERE m.role IN ('owner', 'billing') ORDER BY m.user_id"};
HSEA_QUERY kStartDunning{"billing_dunning_start",
                         "INSERT INTO billing_dunning (tenant_id, invoice_id, suspend_at) "
                         "VALUES (current_setting('app.tenant_id')::uuid, $1, "
                         "now() + make_interval(secs => $2::double precision)) "
                         "ON CONFLICT (tenant_id) DO NOTHING RETURNING invoice_id"};
HSEA_QUERY kDunning{"billing_dunning_get",
                    "SELECT invoice_id, extract(epoch FROM past_due_since)::bigint AS since, "
                    "extract(epoch FROM suspend_at)::bigint AS suspend_at, mailed_attempt "
                    "FROM billing_dunning"};
HSEA_QUERY kMarkMailed{"billing_dunning_mailed",
                       "UPDATE billing_dunning SET mailed_attempt = $1 WHERE mailed_attempt < $1 "
                       "RETURNING mailed_attempt"};
HSEA_QUERY kOtherFailing{"invoice_other_failing",
                         "SELECT id FROM invoices WHERE status = 'open' AND attempt_count > 0 "
                         "AND id <> $1 ORDER BY id LIMIT 1"};
HSEA_QUERY kEndDunning{"billing_dunning_end",
                       "DELETE FROM billing_dunning RETURNING invoice_id, "
                       "(suspended_at IS NOT NULL OR suspend_at <= now()) AS was_suspended"};
HSEA_QUERY kMoveDunning{"billing_dunning_move",
                        "UPDATE billing_dunning SET invoice_id = $1 RETURNING invoice_id"};
HSEA_QUERY kMarkSuspended{
    "billing_dunning_suspended",
    "UPDATE billing_dunning SET suspended_at = now() "
    "WHERE suspended_at IS NULL AND suspend_at <= now() + interval '1 second' "
    "RETURNING invoice_id"};
HSEA_QUERY kForPay{"invoice_for_pay",
                   "SELECT stripe_invoice_id, status FROM invoices "
                   "WHERE id = $1 AND status <> 'draft'"};
HSEA_QUERY kCustomer{"billing_portal_customer",
                     "SELECT stripe_customer_id FROM subscriptions "
                     "WHERE stripe_customer_id IS NOT NULL LIMIT 1"};
HSEA_QUERY kMailLines{"invoice_mail_lines",
                      "SELECT description, amount FROM invoice_lines WHERE invoice_id = $1 "
                      "ORDER BY position LIMIT 50"};

const char* const kRetryKind = "billing.invoice_retry";
const char* const kSuspendKind = "billing.suspend";

const InvoiceSettings* g_settings = nullptr;
std::string g_public_url;

struct Who {
  security::Actor actor;
  security::Origin origin;
};
Who webhook(const StripeEvent& e) {
  return Who{security::Actor{security::Actor::Kind::kStripeWebhook, e.id},
             security::Origin{"", "", e.id}};
}
Who job_actor(const jobs::JobContext& job) {
  return Who{security::Actor{security::Actor::Kind::kJob, job.id()},
             security::Origin{"", "", job.id()}};
}

std::string day(std::int64_t unix_seconds) {
  std::time_t t = unix_seconds;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}
std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string billing_link() { return g_public_url + "/account/billing"; }

awaitable<void> audit_and_emit(db::Transaction& tx, const Who& who, std::string action,
                               std::string target_type, std::string target_id, std::string data) {
  co_await security::record(
      tx, who.actor, who.origin,
      security::event(action, std::move(target_type), std::move(target_id), data));
  co_await jobs::emit(tx, who.actor, who.origin.request_id, std::move(action), std::move(data));
}

std::string invoice_data(const Mirrored& m) {
  return boost::json::serialize(object{{"id", m.id},
                                       {"number", m.number},
                                       {"status", m.status},
                                       {"currency", m.currency},
                                       {"total", m.total},
                                       {"amount_due", m.amount_due}});
}

// Mails the tenant's owners and billing members in `tx` (sealed addresses opened there).
awaitable<void> mail_contacts(db::Transaction& tx, std::string template_name, object data) {
  db::Result users = co_await tx.exec(kContacts);
  std::vector<identity::UserText> to = co_await identity::open_users(users, &tx);
  std::string payload = boost::json::serialize(data);
  for (const identity::UserText& u : to) {
    if (u.email.empty()) continue;  // a user whose key is gone
    mail::Message m = mail::message(template_name, u.email, u.name, payload);
    co_await mail::send(tx, std::move(m));
  }
}

// An invoice that no longer needs paying (paid, voided, or given up by Stripe, whose
// subscription then ends): the tenant's dunning ends unless another invoice is still failing.
awaitable<void> end_dunning(db::Transaction& tx, const Mirrored& m, Who who) {
  db::Result other = co_await tx.exec(kOtherFailing, db::params(m.id));
  if (!other.empty()) {
    co_await tx.exec(kMoveDunning, db::params(other.text(0, "id")));
    co_return;
  }
  db::Result ended = co_await tx.exec(kEndDunning);
  if (ended.empty()) co_return;
  std::string data = boost::json::serialize(
      object{{"invoice_id", m.id}, {"was_suspended", ended.get_bool(0, "was_suspended")}});
  co_await audit_and_emit(tx, who, "subscription.restored", "invoice", m.id, std::move(data));
  invalidate_suspensions();
}

// An invoice that became paid: announced, mailed, and the tenant's dunning ends unless another
// invoice is still failing.
awaitable<void> became_paid(db::Transaction& tx, const Mirrored& m, Who who) {
  if (m.status != "paid" || m.previous_status == "paid") co_return;
  co_await audit_and_emit(tx, who, "invoice.paid", "invoice", m.id, invoice_data(m));
  db::Result lines = co_await tx.exec(kMailLines, db::params(m.id));
  array mail_lines;
  for (int i = 0; i < lines.rows(); ++i) {
    mail_lines.push_back(object{{"description", lines.text(i, "description")},
                                {"amount", format_money(lines.get_int(i, "amount"), m.currency)}});
  }
  object invoice{{"number", m.number},
                 {"period", m.period},
                 {"total", format_money(m.total, m.currency)},
                 {"paid", true},
                 {"paid_on", day(unix_now())},
                 {"lines", std::move(mail_lines)}};
  object mail_data{
      {"invoice", std::move(invoice)}, {"link", billing_link()}, {"button", "View invoices"}};
  // A zero invoice (a trial's) is no news.
  if (m.total != 0) co_await mail_contacts(tx, "invoice", std::move(mail_data));
  co_await end_dunning(tx, m, who);
}

// A failed attempt of an invoice still open: the tenant's dunning starts (once per episode) and
// the billing contacts hear about each new attempt once.
awaitable<void> attempt_failed(db::Transaction& tx, const Mirrored& m, std::int64_t attempt,
                               std::string reason, Who who) {
  if (m.status != "open") co_return;  // paid or voided meanwhile (we read Stripe's latest)
  const InvoiceSettings& s = *g_settings;
  std::string grace_seconds = std::to_string(s.grace_days * 86400);
  db::Result started = co_await tx.exec(kStartDunning, db::params(m.id, grace_seconds));
  if (!started.empty()) {
    for (std::size_t i = 0; i < s.retry_days.size(); ++i) {
      jobs::NewJob retry = jobs::job(
          kRetryKind,
          boost::json::serialize(object{{"invoice_id", m.id}, {"retry", static_cast<int>(i + 1)}}));
      retry.delay = std::chrono::milliseconds(static_cast<long long>(s.retry_days[i] * 86400e3));
      retry.unique_key = "invoice-retry:" + m.id + ":" + std::to_string(i + 1);
      co_await jobs::enqueue(tx, std::move(retry));
    }
    jobs::NewJob suspend =
        jobs::job(kSuspendKind, boost::json::serialize(object{{"invoice_id", m.id}}));
    suspend.delay = std::chrono::milliseconds(static_cast<long long>(s.grace_days * 86400e3));
    suspend.unique_key = "suspend:" + m.id;
    co_await jobs::enqueue(tx, std::move(suspend));
    std::string data = boost::json::serialize(
        object{{"invoice_id", m.id},
               {"suspend_at", day(unix_now() + static_cast<std::int64_t>(s.grace_days * 86400))}});
    co_await audit_and_emit(tx, who, "subscription.past_due", "invoice", m.id, std::move(data));
    invalidate_suspensions();
  }
  db::Result mailed = co_await tx.exec(kMarkMailed, db::params(std::max<std::int64_t>(attempt, 1)));
  if (mailed.empty()) co_return;  // this attempt was announced already
  object data = boost::json::parse(invoice_data(m)).as_object();
  data["attempt"] = attempt;
  data["reason"] = reason;
  co_await audit_and_emit(tx, who, "invoice.payment_failed", "invoice", m.id,
                          boost::json::serialize(data));
  // The next retry after now, or the day writes stop.
  db::Result d = co_await tx.exec(kDunning);
  std::int64_t since = d.empty() ? unix_now() : d.get_int(0, "since");
  std::string retry_on;
  for (double days : s.retry_days) {
    std::int64_t at = since + static_cast<std::int64_t>(days * 86400);
    if (at > unix_now()) {
      retry_on = day(at);
      break;
    }
  }
  if (retry_on.empty()) {
    retry_on = day(d.empty() ? unix_now() : d.get_int(0, "suspend_at")) +
               " (last chance before changes are suspended)";
  }
  object mail_data{{"amount", format_money(m.amount_due, m.currency)},
                   {"reason", reason.empty() ? std::string("the card was declined") : reason},
                   {"retry_on", retry_on},
                   {"link", billing_link()},
                   {"button", "Pay now"}};
  co_await mail_contacts(tx, "payment_failed", std::move(mail_data));
}

std::string stripe_id_of(const object& o) {
  const auto* v = o.if_contains("id");
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}
std::int64_t attempts_of(const object& o) {
  const auto* v = o.if_contains("attempt_count");
  return v != nullptr && v->is_int64() ? v->as_int64() : 0;
}
std::string failure_of(const object& inv, const std::string& fallback) {
  if (const auto* e = inv.if_contains("last_payment_error"); e && e->is_object()) {
    if (const auto* m = e->as_object().if_contains("message"); m && m->is_string()) {
      return std::string(m->as_string());
    }
  }
  return fallback;
}

// Stripe's invoice as it is now; nullopt when Stripe no longer has it.
awaitable<std::optional<object>> read_invoice(std::string stripe_id) {
  StripeReply r = co_await stripe().get("/v1/invoices/" + stripe_id);
  if (r.status == 404) co_return std::nullopt;
  if (!r.ok()) {
    throw std::runtime_error("Stripe refused to show invoice " + stripe_id + ": " +
                             r.error_message());
  }
  co_return r.body;
}

awaitable<void> invoice_event(StripeEvent& e) {
  std::optional<object> inv = co_await read_invoice(stripe_id_of(e.object));
  if (!inv) co_return;
  Mirrored m = co_await mirror_invoice(*e.tx, *inv);
  Who who = webhook(e);
  if (m.previous_status.empty() || m.previous_status == "draft") {
    if (m.status != "draft") {
      co_await audit_and_emit(*e.tx, who, "invoice.finalized", "invoice", m.id, invoice_data(m));
    }
  }
  if (m.status == "paid") {
    co_await became_paid(*e.tx, m, who);
  } else if ((m.status == "void" || m.status == "uncollectible") && m.previous_status != m.status) {
    co_await end_dunning(*e.tx, m, who);
  } else if (e.type == "invoice.payment_failed" || attempts_of(*inv) > 0) {
    std::string reason = failure_of(*inv, failure_of(e.object, std::string()));
    co_await attempt_failed(*e.tx, m, attempts_of(*inv), std::move(reason), who);
  }
}

// ------------------------------------------------------------------------- pay now, retries

// What Stripe answered to "pay now", and the invoice as it is after it.
struct PayAnswer {
  int status = 0;
  std::string error;  // Stripe's message when it declined
  std::optional<object> invoice;
};

awaitable<PayAnswer> ask_stripe_to_pay(std::string stripe_id, std::string idempotency_key) {
  object no_params;
  StripeReply r = co_await stripe().post("/v1/invoices/" + stripe_id + "/pay", std::move(no_params),
                                         std::move(idempotency_key));
  PayAnswer out;
  out.status = r.status;
  if (r.ok()) {
    out.invoice = r.body;
    co_return out;
  }
  // 402: declined; 400: an invoice Stripe will not charge (paid meanwhile, voided). Either way
  // its state tells what happened. Anything else is Stripe being unreachable.
  if (r.status != 402 && r.status != 400) {
    throw ApiError(ErrorCode::kServiceUnavailable, "The payment provider could not be reached.")
        .internal(r.error_message());
  }
  out.error = r.error_message();
  out.invoice = co_await read_invoice(stripe_id);
  co_return out;
}

// Mirrors the invoice Stripe answered with and follows it (paid, or one more failed attempt) in
// `tx`; true when it is paid.
awaitable<bool> apply_payment(db::Transaction& tx, const PayAnswer& answer, Who who) {
  if (!answer.invoice) co_return false;
  Mirrored m = co_await mirror_invoice(tx, *answer.invoice);
  if (m.status == "paid") {
    co_await became_paid(tx, m, who);
    co_return true;
  }
  if (answer.status == 402) {
    co_await attempt_failed(tx, m, attempts_of(*answer.invoice),
                            failure_of(*answer.invoice, answer.error), who);
  }
  co_return false;
}

awaitable<void> retry_job(jobs::JobContext& job) {
  const auto* id = job.payload().if_contains("invoice_id");
  const auto* n = job.payload().if_contains("retry");
  if (id == nullptr || !id->is_string()) co_return;
  std::string invoice_id(id->as_string());
  db::Result r = co_await db::pool().tenant_query(job.tenant_id(), kForPay, db::params(invoice_id));
  if (r.empty() || r.text(0, "status") != "open") co_return;  // paid or voided since
  if (!stripe().configured()) co_return;
  std::string key = "invoice-retry:" + invoice_id + ":" +
                    std::to_string(n != nullptr && n->is_int64() ? n->as_int64() : 0);
  PayAnswer answer = co_await ask_stripe_to_pay(r.text(0, "stripe_invoice_id"), std::move(key));
  db::Transaction* tx = co_await job.transaction();
  co_await apply_payment(*tx, answer, job_actor(job));
}

// The grace period is over: the refusal itself only compares suspend_at with the clock; this
// records and announces it once.
awaitable<void> suspend_job(jobs::JobContext& job) {
  db::Transaction* tx = co_await job.transaction();
  db::Result r = co_await tx->exec(kMarkSuspended);
  if (r.empty()) co_return;  // paid meanwhile, or announced already
  std::string invoice_id = r.text(0, "invoice_id");
  std::string data = boost::json::serialize(object{{"invoice_id", invoice_id}});
  co_await audit_and_emit(*tx, job_actor(job), "subscription.suspended", "invoice", invoice_id,
                          std::move(data));
  invalidate_suspensions();
}

awaitable<Response> pay_invoice(RequestContext& ctx) {
  require_stripe();
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such invoice.");
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kForPay, db::params(id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such invoice.");
  std::string status = r.text(0, "status");
  if (status == "paid") throw ApiError(ErrorCode::kConflict, "The invoice is paid already.");
  if (status != "open") {
    throw ApiError(ErrorCode::kConflict,
                   "Only an open invoice can be paid; this one is " + status + ".");
  }
  Who who{security::actor_of(ctx), security::origin_of(ctx)};
  // One key per request: a client's retry of the same request (same request id) charges once.
  PayAnswer answer = co_await ask_stripe_to_pay(r.text(0, "stripe_invoice_id"),
                                                "invoice-pay:" + id + ":" + ctx.request_id);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  bool paid = co_await apply_payment(tx, answer, who);
  co_await tx.commit();
  if (!paid) {
    throw ApiError(ErrorCode::kPaymentFailed,
                   answer.error.empty() ? std::string("The payment did not go through.")
                                        : "The payment did not go through: " + answer.error);
  }
  co_return http::json_response(200, object{{"id", id}, {"status", "paid"}});
}

// Payment methods are managed on Stripe's billing portal: a session for the tenant's customer
// that returns to the billing page.
awaitable<Response> portal_session(RequestContext& ctx) {
  require_stripe();
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kCustomer);
  if (r.empty()) {
    throw ApiError(ErrorCode::kConflict,
                   "There is no payment account yet: choose a paid plan first.");
  }
  object params{{"customer", r.text(0, "stripe_customer_id")}, {"return_url", billing_link()}};
  StripeReply s = co_await stripe().post("/v1/billing_portal/sessions", std::move(params),
                                         "portal-session:" + ctx.request_id);
  const auto* url = s.body.if_contains("url");
  if (!s.ok() || url == nullptr || !url->is_string()) {
    throw ApiError(ErrorCode::kServiceUnavailable, "The payment provider could not be reached.")
        .internal(s.error_message());
  }
  co_return http::json_response(201, object{{"url", url->as_string()}});
}

}  // namespace

awaitable<void> mail_billing_contacts(db::Transaction& tx, std::string template_name, object data) {
  co_await mail_contacts(tx, std::move(template_name), std::move(data));
}

void register_invoice_events(runtime::Registrar& reg, const InvoiceSettings& settings) {
  g_settings = &settings;
  g_public_url = reg.config().public_url;
  on_stripe_event(reg, "invoice.finalized", invoice_event);
  on_stripe_event(reg, "invoice.paid", invoice_event);
  on_stripe_event(reg, "invoice.payment_failed", invoice_event);
  jobs::define(reg, {.kind = kRetryKind, .run = retry_job, .max_attempts = 5});
  jobs::define(reg, {.kind = kSuspendKind, .run = suspend_job});
  jobs::event_type(reg,
                   {"invoice.finalized", "An invoice of the tenant's subscription was issued."});
  jobs::event_type(reg, {"invoice.paid", "An invoice was paid."});
  jobs::event_type(reg, {"invoice.payment_failed",
                         "A payment of an invoice failed; it is retried on a schedule."});
  jobs::event_type(reg, {"subscription.past_due",
                         "A payment failed: the grace period before suspension started."});
  jobs::event_type(
      reg, {"subscription.suspended", "The grace period ran out: the tenant's writes answer 402."});
  jobs::event_type(reg, {"subscription.restored", "A payment ended the tenant's dunning."});
  // Paying and managing payment methods change billing: owners and the billing role, never an
  // API key (no scopes), as the subscription changes. Admins make keys but may not change
  // billing, so no key scope may grant it (docs/permissions.md). Unmetered: a tenant past its
  // quota can still pay, and a suspended one too (OpenWhenSuspended).
  const identity::Access change{
      .authenticated = true, .tenant = true, .roles = {"owner", "billing"}};
  reg.route({.method = http::Method::kPost,
             .path = "/api/invoices/{id}/pay",
             .handler = pay_invoice,
             .policies = http::Policies(change, metering::Unmetered{}, OpenWhenSuspended{})});
  reg.route({.method = http::Method::kPost,
             .path = "/api/billing/portal-session",
             .handler = portal_session,
             .policies = http::Policies(change, metering::Unmetered{}, OpenWhenSuspended{})});
}

}  // namespace hsea::billing
