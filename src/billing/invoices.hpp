#pragma once
// Invoices (HSEA-028) and dunning (HSEA-030), inside the billing module: the mirror of Stripe's
// invoice objects (migrations/0019_invoices.sql), GET /api/invoices with the PDF, POST .../pay,
// the handlers of invoice.finalized / invoice.paid / invoice.payment_failed, the retry jobs and
// the suspension of a tenant whose grace period ran out (writes answer 402 billing_suspended).
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>

#include <string>
#include <vector>

namespace hsea::runtime {
class Registrar;
}
namespace hsea::db {
class Transaction;
}

namespace hsea::billing {

struct InvoiceSettings {
  std::string seller_name = "HSEA";
  std::string seller_address;  // lines separated by ";"
  std::string seller_tax_id;
  std::vector<double> retry_days{1, 3, 5};  // after the first failure, days (fractions allowed)
  double grace_days = 7;                    // after the first failure, then writes answer 402
};

// The tenant's mirror of one Stripe invoice object, written in `tx` (the tenant's scope).
struct Mirrored {
  std::string id;               // ours (UUIDv7)
  std::string status;           // now
  std::string previous_status;  // before, "" when the invoice is new here
  std::string number;
  std::string currency;
  std::int64_t amount_due = 0;
  std::int64_t total = 0;
  std::string hosted_invoice_url;
  std::string period;  // "2026-11-01 to 2026-12-01", or "" when Stripe gave none
};
boost::asio::awaitable<Mirrored> mirror_invoice(db::Transaction& tx,
                                                const boost::json::object& stripe_invoice);

// Declares the settings, routes, suspension step, Stripe event handlers and jobs. After
// billing::Register (the Stripe event table must exist).
void register_invoices(runtime::Registrar& registrar);

}  // namespace hsea::billing
