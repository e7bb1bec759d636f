#pragma once
// Dunning (HSEA-030), internal to the billing module: what follows a failed payment (the
// subscription past due, the billing contacts mailed, retries on HSEA_BILLING_RETRY_DAYS) and
// the suspension step that refuses a tenant's writes with 402 billing_suspended once
// HSEA_BILLING_GRACE_DAYS have passed without a successful payment.
#include "billing/invoices.hpp"

namespace hsea::billing {

const InvoiceSettings& invoice_settings();

// Declares the suspension step, the Stripe invoice event handlers and the dunning jobs.
void register_dunning(runtime::Registrar& registrar, const InvoiceSettings& settings);

// The handlers of Stripe's invoice events, the retry and suspension jobs, the event types,
// POST /api/invoices/{id}/pay and POST /api/billing/portal-session (invoice_events.cpp).
void register_invoice_events(runtime::Registrar& registrar, const InvoiceSettings& settings);

// Empties every thread's cache of tenants' suspension dates (this process at once; other nodes
// within kSuspensionCacheTtl).
void invalidate_suspensions();

}  // namespace hsea::billing
