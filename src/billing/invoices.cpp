// Invoices (HSEA-028): the tenant's mirror of Stripe's invoices, read at GET /api/invoices, one
// at GET /api/invoices/{id} and as a PDF HSEA renders (invoice_pdf.cpp) from the mirrored row,
// the seller details of HSEA_BILLING_SELLER_* and the billing details Stripe printed.
#include "billing/invoices.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "billing/billing.hpp"
#include "billing/dunning.hpp"
#include "billing/internal.hpp"
#include "billing/invoice_pdf.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/settings.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "metering/policies.hpp"
#include "runtime/registrar.hpp"
#include "runtime/runtime.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using boost::json::array;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

#define HSEA_INVOICE_COLUMNS                                                                 \
  "id, number, status, billing_reason, currency, subtotal, tax, total, amount_due, "         \
  "amount_paid, amount_remaining, attempt_count, next_payment_attempt, last_payment_error, " \
  "period_start, period_end, due_date, paid_at, hosted_invoice_url, customer_name, "         \
  "customer_email, customer_address::text AS customer_address, customer_tax_id, "            \
  "stripe_invoice_id, stripe_created_at, updated_at"

// Two events of one invoice run as two jobs, perhaps at once: each handler's transaction first
// takes this lock, so the second reads the row the first wrote (its own statement: a statement's
// snapshot is taken before anything in it waits) and announces nothing twice.
HSEA_QUERY kLockInvoice{"invoice_mirror_lock",
                        "SELECT pg_advisory_xact_lock(hashtextextended('invoice:' || $1, 0))"};

// Stripe's invoice as it is now (the handlers re-read it), whatever the row held before.
HSEA_QUERY kMirror{
    "invoice_mirror",
    "WITH old AS (SELECT status FROM invoices WHERE stripe_invoice_id = $1) "
    "INSERT INTO invoices (tenant_id, id, stripe_invoice_id, stripe_subscription_id, number, "
    "status, billing_reason, currency, subtotal, tax, total, amount_due, amount_paid, "
    "amount_remaining, attempt_count, next_payment_attempt, last_payment_error, period_start, "
    "period_end, due_date, paid_at, hosted_invoice_url, customer_name, customer_email, "
    "customer_address, customer_tax_id, stripe_created_at) VALUES ("
    "current_setting('app.tenant_id')::uuid, $2, $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
    "$13, $14, to_timestamp($15::bigint), $16, to_timestamp($17::bigint), "
    "to_timestamp($18::bigint), to_timestamp($19::bigint), to_timestamp($20::bigint), $21, $22, "
    "$23, ARRAY(SELECT jsonb_array_elements_text($24::jsonb)), $25, "
    "COALESCE(to_timestamp($26::bigint), now())) "
    "ON CONFLICT (tenant_id, stripe_invoice_id) DO UPDATE SET "
    "stripe_subscription_id = EXCLUDED.stripe_subscription_id, number = EXCLUDED.number, "
    "status = EXCLUDED.status, billing_reason = EXCLUDED.billing_reason, "
    "currency = EXCLUDED.currency, subtotal = EXCLUDED.subtotal, tax = EXCLUDED.tax, "
    "total = EXCLUDED.total, amount_due = EXCLUDED.amount_due, "
    "amount_paid = EXCLUDED.amount_paid, amount_remaining = EXCLUDED.amount_remaining, "
    "attempt_count = EXCLUDED.attempt_count, "
    "next_payment_attempt = EXCLUDED.next_payment_attempt, "
    "last_payment_error = COALESCE(EXCLUDED.last_payment_error, invoices.last_payment_error), "
    "period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, "
    "due_date = EXCLUDED.due_date, paid_at = EXCLUDED.paid_at, "
    "hosted_invoice_url = EXCLUDED.hosted_invoice_url, customer_name = EXCLUDED.customer_name, "
    "customer_email = EXCLUDED.customer_email, customer_address = EXCLUDED.customer_address, "
    "customer_tax_id = EXCLUDED.customer_tax_id, updated_at = now() "
    "RETURNING id, status, number, currency, amount_due, total, hosted_invoice_url, "
    "period_start, period_end, "
    "(SELECT status FROM old) AS previous_status"};
HSEA_QUERY kDeleteLines{"invoice_lines_delete", "DELETE FROM invoice_lines WHERE invoice_id = $1"};
HSEA_QUERY kInsertLines{
    "invoice_lines_insert",
    "INSERT INTO invoice_lines (tenant_id, invoice_id, position, stripe_line_id, description, "
    "quantity, amount, proration, period_start, period_end) "
    "SELECT current_setting('app.tenant_id')::uuid, $1, (l.ord - 1)::int, l.v->>'id', "
    "COALESCE(l.v->>'description', ''), COALESCE((l.v->>'quantity')::bigint, 1), "
    "COALESCE((l.v->>'amount')::bigint, 0), COALESCE((l.v->>'proration')::boolean, false), "
    "to_timestamp((l.v->'period'->>'start')::bigint), "
    "to_timestamp((l.v->'period'->>'end')::bigint) "
    "FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS l(v, ord)"};
HSEA_QUERY kList{"invoice_list",
                 "SELECT " HSEA_INVOICE_COLUMNS
                 " FROM invoices WHERE status <> 'draft' AND ($1::uuid IS NULL OR id < $1) "
                 "ORDER BY id DESC LIMIT $2"};
HSEA_QUERY kGet{"invoice_get", "SELECT " HSEA_INVOICE_COLUMNS
                               " FROM invoices WHERE id = $1 AND status <> 'draft'"};
HSEA_QUERY kLines{"invoice_lines_get",
                  "SELECT description, quantity, amount, proration, period_start, period_end "
                  "FROM invoice_lines WHERE invoice_id = $1 ORDER BY position"};

// ------------------------------------------------------------------------------ settings

std::optional<double> parse_days(std::string_view text) {
  double d = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(d) || d < 0 ||
      d > 365) {
    return std::nullopt;
  }
  return d;
}

std::string show_days(double d) {
  std::string s = fmt::format("{}", d);
  return s;
}

const core::Section<InvoiceSettings> kSettings{
    "invoices",
    {core::string_setting(&InvoiceSettings::seller_name, "HSEA_BILLING_SELLER_NAME", "HSEA",
                          "the seller's name at the top of every invoice PDF"),
     core::string_setting(&InvoiceSettings::seller_address, "HSEA_BILLING_SELLER_ADDRESS", "",
                          "the seller's postal address on invoice PDFs, lines separated by \";\""),
     core::string_setting(&InvoiceSettings::seller_tax_id, "HSEA_BILLING_SELLER_TAX_ID", "",
                          "the seller's tax (VAT) number on invoice PDFs"),
     core::Entry<InvoiceSettings>{
         {"HSEA_BILLING_RETRY_DAYS", "1,3,5", false,
          "after a failed payment, retry it this many days after the first failure "
          "(comma-separated, ascending; fractions allowed; empty: no automatic retries)"},
         [](const std::string& v, InvoiceSettings& s) -> std::optional<std::string> {
           std::vector<double> days;
           std::string_view rest = v;
           while (!rest.empty()) {
             std::size_t comma = rest.find(',');
             std::string_view item = rest.substr(0, comma);
             while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
             while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
             auto d = parse_days(item);
             if (!d || (!days.empty() && *d <= days.back())) {
               return std::string(
                   "must be ascending numbers of days from 0 to 365, "
                   "comma-separated (e.g. 1,3,5)");
             }
             days.push_back(*d);
             if (comma == std::string_view::npos) break;
             rest.remove_prefix(comma + 1);
           }
           if (days.size() > 20) return std::string("must list at most 20 retries");
           s.retry_days = std::move(days);
           return std::nullopt;
         },
         [](const InvoiceSettings& s) {
           std::string out;
           for (double d : s.retry_days) out += (out.empty() ? "" : ",") + show_days(d);
           return out;
         }},
     core::Entry<InvoiceSettings>{
         {"HSEA_BILLING_GRACE_DAYS", "7", false,
          "days after a first failed payment until the tenant's writes answer 402 "
          "billing_suspended (fractions allowed)"},
         [](const std::string& v, InvoiceSettings& s) -> std::optional<std::string> {
           auto d = parse_days(v);
           if (!d) return std::string("must be a number of days from 0 to 365");
           s.grace_days = *d;
           return std::nullopt;
         },
         [](const InvoiceSettings& s) { return show_days(s.grace_days); }}}};

const InvoiceSettings* g_settings = nullptr;

// --------------------------------------------------------------------- Stripe's objects

std::string str_of(const object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : std::string();
}
std::optional<std::int64_t> int_of(const object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->as_uint64());
  return std::nullopt;
}
const object* obj_of(const object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_object() ? &v->as_object() : nullptr;
}
const array* arr_of(const object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v != nullptr && v->is_array() ? &v->as_array() : nullptr;
}
std::int64_t sum_amounts(const array* a) {
  std::int64_t sum = 0;
  if (a == nullptr) return sum;
  for (const auto& t : *a) {
    if (t.is_object()) sum += int_of(t.as_object(), "amount").value_or(0);
  }
  return sum;
}

// Stripe's customer_address as printed lines.
std::string address_lines(const object& inv) {
  array lines;
  if (const object* a = obj_of(inv, "customer_address")) {
    std::string city = str_of(*a, "postal_code");
    if (!str_of(*a, "city").empty()) city += (city.empty() ? "" : " ") + str_of(*a, "city");
    if (!str_of(*a, "state").empty()) city += (city.empty() ? "" : ", ") + str_of(*a, "state");
    for (const std::string& line :
         {str_of(*a, "line1"), str_of(*a, "line2"), city, str_of(*a, "country")}) {
      if (!line.empty()) lines.emplace_back(line);
    }
  }
  return boost::json::serialize(lines);
}

std::string tax_ids(const object& inv) {
  std::string out;
  if (const array* ids = arr_of(inv, "customer_tax_ids")) {
    for (const auto& t : *ids) {
      if (!t.is_object()) continue;
      std::string v = str_of(t.as_object(), "value");
      if (!v.empty()) out += (out.empty() ? "" : ", ") + v;
    }
  }
  return out;
}

std::string subscription_of(const object& inv) {
  std::string s = str_of(inv, "subscription");
  if (s.empty()) {
    if (const object* sub = obj_of(inv, "subscription")) s = str_of(*sub, "id");
  }
  if (s.empty()) {
    if (const object* parent = obj_of(inv, "parent")) {
      if (const object* d = obj_of(*parent, "subscription_details")) {
        s = str_of(*d, "subscription");
      }
    }
  }
  return s;
}

// Why the last attempt failed: an expanded payment intent's error, or what the emulator or a
// newer API version puts on the invoice.
std::optional<std::string> payment_error_of(const object& inv) {
  for (const char* holder : {"payment_intent", "charge"}) {
    if (const object* pi = obj_of(inv, holder)) {
      if (const object* e = obj_of(*pi, "last_payment_error")) {
        std::string m = str_of(*e, "message");
        if (!m.empty()) return m;
      }
      std::string m = str_of(*pi, "failure_message");
      if (!m.empty()) return m;
    }
  }
  if (const object* e = obj_of(inv, "last_payment_error")) {
    std::string m = str_of(*e, "message");
    if (!m.empty()) return m;
  }
  return std::nullopt;
}

template <typename T>
std::optional<std::string> opt(const std::optional<T>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}
std::optional<std::string> non_empty(std::string s) {
  if (s.empty()) return std::nullopt;
  return s;
}

// ------------------------------------------------------------------------------ the API

object invoice_json(const db::Result& r, int row) {
  array address;
  for (const std::string& line : r.words(row, "customer_address")) address.emplace_back(line);
  std::string id = r.text(row, "id");
  return object{{"id", id},
                {"number", r.nullable(row, "number")},
                {"status", r.text(row, "status")},
                {"billing_reason", r.nullable(row, "billing_reason")},
                {"currency", r.text(row, "currency")},
                {"subtotal", r.get_int(row, "subtotal")},
                {"tax", r.get_int(row, "tax")},
                {"total", r.get_int(row, "total")},
                {"amount_due", r.get_int(row, "amount_due")},
                {"amount_paid", r.get_int(row, "amount_paid")},
                {"amount_remaining", r.get_int(row, "amount_remaining")},
                {"attempt_count", r.get_int(row, "attempt_count")},
                {"next_payment_attempt", r.nullable_time(row, "next_payment_attempt")},
                {"last_payment_error", r.nullable(row, "last_payment_error")},
                {"period_start", r.nullable_time(row, "period_start")},
                {"period_end", r.nullable_time(row, "period_end")},
                {"due_date", r.nullable_time(row, "due_date")},
                {"paid_at", r.nullable_time(row, "paid_at")},
                {"hosted_invoice_url", r.nullable(row, "hosted_invoice_url")},
                {"customer", object{{"name", r.nullable(row, "customer_name")},
                                    {"email", r.nullable(row, "customer_email")},
                                    {"address", std::move(address)},
                                    {"tax_id", r.nullable(row, "customer_tax_id")}}},
                {"pdf_url", "/api/invoices/" + id + "/pdf"},
                {"stripe_invoice_id", r.text(row, "stripe_invoice_id")},
                {"created_at", r.time(row, "stripe_created_at")},
                {"updated_at", r.time(row, "updated_at")}};
}

std::string invoice_id(const RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such invoice.");
  return id;
}

awaitable<Response> list_invoices(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kList,
                                                  db::params(page.starting_after, page.fetch()));
  array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(invoice_json(r, i));
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> get_invoice(RequestContext& ctx) {
  std::string id = invoice_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kGet, db::params(id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such invoice.");
  db::Result l = co_await tx.exec_commit(kLines, db::params(id));
  object out = invoice_json(r, 0);
  array lines;
  for (int i = 0; i < l.rows(); ++i) {
    lines.push_back(object{{"description", l.text(i, "description")},
                           {"quantity", l.get_int(i, "quantity")},
                           {"amount", l.get_int(i, "amount")},
                           {"proration", l.get_bool(i, "proration")},
                           {"period_start", l.nullable_time(i, "period_start")},
                           {"period_end", l.nullable_time(i, "period_end")}});
  }
  out["lines"] = std::move(lines);
  co_return http::json_response(200, out);
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t semi = text.find(';', start);
    std::string line =
        text.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
    while (!line.empty() && line.front() == ' ') line.erase(0, 1);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    if (!line.empty()) out.push_back(std::move(line));
    if (semi == std::string::npos) break;
    start = semi + 1;
  }
  return out;
}

awaitable<Response> invoice_pdf(RequestContext& ctx) {
  std::string id = invoice_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(kGet, db::params(id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such invoice.");
  db::Result l = co_await tx.exec_commit(kLines, db::params(id));
  InvoiceDocument doc;
  doc.number = r.text(0, "number");
  doc.status = r.text(0, "status");
  doc.currency = r.text(0, "currency");
  doc.issued_on = day_of(r, 0, "stripe_created_at");
  doc.due_on = day_of(r, 0, "due_date");
  doc.paid_on = day_of(r, 0, "paid_at");
  doc.period_start = day_of(r, 0, "period_start");
  doc.period_end = day_of(r, 0, "period_end");
  doc.seller = Party{g_settings->seller_name, "", split_lines(g_settings->seller_address),
                     g_settings->seller_tax_id};
  doc.customer = Party{r.text(0, "customer_name"), r.text(0, "customer_email"),
                       r.words(0, "customer_address"), r.text(0, "customer_tax_id")};
  for (int i = 0; i < l.rows(); ++i) {
    doc.lines.push_back(
        {l.text(i, "description"), l.get_int(i, "quantity"), l.get_int(i, "amount")});
  }
  doc.subtotal = r.get_int(0, "subtotal");
  doc.tax = r.get_int(0, "tax");
  doc.total = r.get_int(0, "total");
  doc.amount_paid = r.get_int(0, "amount_paid");
  doc.amount_due = r.get_int(0, "amount_remaining");
  // Rendering is CPU work: the CPU pool, not the I/O thread.
  auto render = [doc = std::move(doc)] { return render_invoice_pdf(doc); };
  std::string pdf = co_await runtime::cpu_pool().run(std::move(render));
  Response out = Response::text(200, std::move(pdf), "application/pdf");
  std::string name = r.text(0, "number").empty() ? id : r.text(0, "number");
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') c = '_';
  }
  out.set_header("content-disposition", "attachment; filename=\"invoice-" + name + ".pdf\"");
  out.set_header("cache-control", "private, no-store");
  co_return out;
}

// Every line of a Stripe invoice, as a JSON array. Stripe embeds only the first page of lines
// (10) in the invoice object; when lines.has_more says there are more, the rest are read from
// GET /v1/invoices/{id}/lines, a page after the last line seen, until a page says no more.
awaitable<std::string> all_lines(const object& inv, std::string stripe_id) {
  array lines;
  bool more = false;
  auto has_more = [](const object& list) {
    const boost::json::value* m = list.if_contains("has_more");
    return m != nullptr && m->is_bool() && m->as_bool();
  };
  if (const object* l = obj_of(inv, "lines")) {
    if (const array* data = arr_of(*l, "data")) lines = *data;
    more = has_more(*l);
  }
  // 1000 pages of 100 lines: a bound, not a limit any invoice reaches.
  for (int page = 0; more && page < 1000; ++page) {
    std::string after = lines.empty() || !lines.back().is_object()
                            ? std::string()
                            : str_of(lines.back().as_object(), "id");
    if (after.empty()) throw std::runtime_error("invoice " + stripe_id + ": a line without an id");
    object query{{"limit", 100}, {"starting_after", after}};
    std::string path = "/v1/invoices/" + stripe_id + "/lines";
    StripeReply r = co_await stripe().get(std::move(path), std::move(query));
    if (!r.ok()) {
      throw std::runtime_error("invoice " + stripe_id + ": lines: " + r.error_message());
    }
    const array* data = arr_of(r.body, "data");
    if (data == nullptr || data->empty()) break;
    for (const auto& line : *data) lines.push_back(line);
    more = has_more(r.body);
  }
  co_return boost::json::serialize(lines);
}

}  // namespace

std::string day_of(const db::Result& r, int row, std::string_view column) {
  if (r.is_null(row, r.column(column))) return {};
  return r.time(row, column).substr(0, 10);
}

const InvoiceSettings& invoice_settings() { return *g_settings; }

awaitable<Mirrored> mirror_invoice(db::Transaction& tx, const object& inv) {
  std::string stripe_id = str_of(inv, "id");
  if (stripe_id.empty()) throw std::runtime_error("a Stripe invoice without an id");
  std::string status = str_of(inv, "status");
  if (status.empty()) status = "draft";
  std::string currency = str_of(inv, "currency");
  for (char& c : currency) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::int64_t tax = 0;
  if (auto t = int_of(inv, "tax")) {
    tax = *t;
  } else if (const array* a = arr_of(inv, "total_taxes")) {
    tax = sum_amounts(a);
  } else {
    tax = sum_amounts(arr_of(inv, "total_tax_amounts"));
  }
  std::optional<std::int64_t> paid_at;
  if (const object* t = obj_of(inv, "status_transitions")) paid_at = int_of(*t, "paid_at");
  // Read before the invoice's lock is taken: Stripe's answers are not waited for under it.
  std::string lines = co_await all_lines(inv, stripe_id);
  std::optional<std::int64_t> period_start = int_of(inv, "period_start"),
                              period_end = int_of(inv, "period_end");
  // A subscription invoice's service period is its lines' (Stripe's invoice-level period is the
  // previous one for subscription_cycle invoices).
  if (const object* l = obj_of(inv, "lines")) {
    if (const array* data = arr_of(*l, "data"); data != nullptr && !data->empty()) {
      const auto& first = data->front();
      if (first.is_object()) {
        if (const object* p = obj_of(first.as_object(), "period")) {
          if (auto s = int_of(*p, "start")) period_start = s;
          if (auto e = int_of(*p, "end")) period_end = e;
        }
      }
    }
  }
  // Built before the co_await: g++ 12 destroys temporaries of an awaited call's arguments twice.
  db::Params mirror_params = db::params(
      stripe_id, core::uuid_v7(), non_empty(subscription_of(inv)), non_empty(str_of(inv, "number")),
      status, non_empty(str_of(inv, "billing_reason")),
      currency.empty() ? std::string("usd") : currency, int_of(inv, "subtotal").value_or(0), tax,
      int_of(inv, "total").value_or(0), int_of(inv, "amount_due").value_or(0),
      int_of(inv, "amount_paid").value_or(0), int_of(inv, "amount_remaining").value_or(0),
      int_of(inv, "attempt_count").value_or(0), opt(int_of(inv, "next_payment_attempt")),
      payment_error_of(inv), opt(period_start), opt(period_end), opt(int_of(inv, "due_date")),
      opt(paid_at), non_empty(str_of(inv, "hosted_invoice_url")),
      non_empty(str_of(inv, "customer_name")), non_empty(str_of(inv, "customer_email")),
      address_lines(inv), non_empty(tax_ids(inv)), opt(int_of(inv, "created")));
  db::Params lock_params = db::params(stripe_id);
  co_await tx.exec(kLockInvoice, std::move(lock_params));
  db::Result r = co_await tx.exec(kMirror, std::move(mirror_params));
  Mirrored m;
  m.id = r.text(0, "id");
  m.status = r.text(0, "status");
  m.previous_status = r.text(0, "previous_status");
  m.number = r.text(0, "number");
  m.currency = r.text(0, "currency");
  m.amount_due = r.get_int(0, "amount_due");
  m.total = r.get_int(0, "total");
  m.hosted_invoice_url = r.text(0, "hosted_invoice_url");
  if (!r.is_null(0, r.column("period_start")) && !r.is_null(0, r.column("period_end"))) {
    m.period = day_of(r, 0, "period_start") + " to " + day_of(r, 0, "period_end");
  }
  co_await tx.exec(kDeleteLines, db::params(m.id));
  co_await tx.exec(kInsertLines, db::params(m.id, lines));
  co_return m;
}

void register_invoices(runtime::Registrar& reg) {
  g_settings = &reg.settings(kSettings);
  using http::Method;
  using http::Policies;
  // Reading invoices: owners, admins and the billing role; keys with billing:read (or read).
  // Unmetered: a tenant past its quota can still see what it owes.
  const identity::Access readers{.authenticated = true,
                                 .tenant = true,
                                 .roles = {"owner", "admin", "billing"},
                                 .scopes = {"billing:read"}};
  reg.route({.method = Method::kGet,
             .path = "/api/invoices",
             .handler = list_invoices,
             .policies = Policies(readers, metering::Unmetered{})});
  reg.route({.method = Method::kGet,
             .path = "/api/invoices/{id}",
             .handler = get_invoice,
             .policies = Policies(readers, metering::Unmetered{})});
  reg.route({.method = Method::kGet,
             .path = "/api/invoices/{id}/pdf",
             .handler = invoice_pdf,
             .policies = Policies(readers, metering::Unmetered{})});
  register_dunning(reg, *g_settings);
  register_invoice_events(reg, *g_settings);
}

}  // namespace hsea::billing
