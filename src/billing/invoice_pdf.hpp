#pragma once
// Invoice documents (HSEA-028): money formatting and the PDF HSEA renders with libharu for
// GET /api/invoices/{id}/pdf. Pure functions of an InvoiceDocument: no I/O, no database, so the
// caller runs them on a work pool and tests read the bytes back with pdftotext.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hsea::billing {

// Digits after the decimal point of an ISO 4217 currency as Stripe counts minor units: 0 for
// JPY, KRW and Stripe's other zero-decimal currencies, 2 otherwise.
int currency_exponent(std::string_view currency);

// `minor` units of `currency` (case-insensitive) for a reader: "$1,234.56", "€49.00",
// "¥1,235", "£3.50", and "1,234.56 CHF" for currencies without a symbol here; negative
// amounts lead with "-".
std::string format_money(std::int64_t minor, std::string_view currency);

struct Party {
  std::string name;
  std::string email;
  std::vector<std::string> address;  // lines, first to last; empty ones are skipped
  std::string tax_id;
};

struct InvoiceLine {
  std::string description;
  std::int64_t quantity = 1;
  std::int64_t amount = 0;  // minor units, the line's total
};

struct InvoiceDocument {
  std::string number;  // Stripe's invoice number, e.g. "A1B2C3-0001"
  std::string status;  // draft, open, paid, uncollectible, void
  std::string currency;
  std::string issued_on;  // dates as YYYY-MM-DD; empty ones are left out
  std::string due_on;
  std::string paid_on;
  std::string period_start;
  std::string period_end;
  Party seller;
  Party customer;
  std::vector<InvoiceLine> lines;
  std::int64_t subtotal = 0;
  std::int64_t tax = 0;
  std::int64_t total = 0;
  std::int64_t amount_paid = 0;
  std::int64_t amount_due = 0;
};

// The PDF's bytes (A4, Helvetica, more pages when the lines need them). Text outside
// Windows-1252 (Helvetica's encoding here) is shown as "?". Throws std::runtime_error when
// libharu fails.
std::string render_invoice_pdf(const InvoiceDocument& invoice);

}  // namespace hsea::billing
