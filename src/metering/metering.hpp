#pragma once
// Usage metering (HSEA-026) and quotas (HSEA-027).
//
// Meters: api_calls (every authenticated tenant request under /api, counted in-process by the
// quota step and written in batches by each I/O thread, so metering adds no database round trip
// to a request), seats (the tenant's members) and storage_bytes are the platform's; the product
// records its own with POST /api/usage/events. Every recorded quantity is a row of usage_events
// (partitioned by month): the rows are the truth, the real-time api_calls counters (Redis, or
// in-process without HSEA_REDIS_URL) are rebuilt from them when missing, and the daily and
// monthly rollups are recomputed from them by a job.
//
// Quotas: a meter's quota comes from the tenant's override (quota_overrides, set by the
// operator) or else the plan default (HSEA_QUOTA_*). Past the soft threshold a request gets
// X-Quota-Warning and the tenant's owners and admins one mail per period (event
// usage.limit_warning); past the hard threshold it is refused with 429 quota_exceeded.
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "metering/policies.hpp"

namespace hsea::runtime {
class Registrar;
}
namespace hsea::db {
class Transaction;
}

namespace hsea::metering {

inline constexpr std::string_view kApiCalls = "api_calls";
inline constexpr std::string_view kSeats = "seats";
inline constexpr std::string_view kStorageBytes = "storage_bytes";

// Route policies: Unmetered, StoresData (metering/policies.hpp).

// storage_bytes is a gauge: its value is the latest measurement, not a sum. The daily
// metering-storage job measures every tenant's rows (usage_storage_measure(), which also adds
// the `size_bytes` column of any tenant table that has one). A module that stores bytes outside
// those rows (the file store of HSEA-036) keeps each object's size in a `size_bytes` column of
// its tenant table and calls this in the transaction that stores (+bytes) or deletes (-bytes)
// the object, so the gauge, the quota and the summary move at once, not a day later:
boost::asio::awaitable<void> record_storage_change(db::Transaction& tx, std::int64_t delta_bytes);

// seats: the tenant's members, against the plan's `seats` limit (or the tenant's override).
// Call in the transaction (scoped to `tenant_id`) that adds a member: accepting an invitation.
// Sending one needs no free seat (an admin may free one before it is accepted);
// `with_open_invitations` also counts the open invitations, for a caller that reserves seats.
// Serialised per tenant (a transaction-scoped advisory lock), so concurrent joins cannot pass
// the limit together. Throws 429 quota_exceeded when no seat is free.
boost::asio::awaitable<void> require_seat(db::Transaction& tx, std::string tenant_id,
                                          bool with_open_invitations);

// A billing period, [start, end) in Unix seconds.
struct Period {
  std::int64_t start = 0;
  std::int64_t end = 0;
};
// The UTC calendar month holding `now` (the period of a tenant without a subscription).
Period month_of(std::int64_t now);

// A meter's quota in a period and where usage stands against it.
struct Quota {
  std::optional<std::int64_t> limit;  // none: unlimited
  int soft_percent = 80;
  int hard_percent = 100;

  std::int64_t soft() const { return limit ? *limit * soft_percent / 100 : 0; }
  std::int64_t hard() const { return limit ? *limit * hard_percent / 100 : 0; }
  // A meter the plan bills by usage (plans.metered): its limit is the amount included in the
  // price; past it the tenant is charged, warned, never refused.
  bool metered = false;

  bool exceeded(std::int64_t used) const { return limit && !metered && used >= hard(); }
  bool warning(std::int64_t used) const { return limit && used >= soft(); }
  std::int64_t remaining(std::int64_t used) const {
    return limit ? (used >= hard() ? 0 : hard() - used) : 0;
  }
};

// An RFC 3339 date-time ("2026-12-06T04:00:00Z", "...05.25+01:00") as Unix seconds, or nullopt.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);
// A meter name: [a-z][a-z0-9_.]{0,62}.
bool valid_meter(std::string_view name);

// Reports the tenant's metered usage not yet reported to Stripe now (the periodic report's
// prepare/send/confirm, idempotent), up to a settle time of the statement timeout plus a margin.
// Billing awaits it (billing::on_usage_reports) before a change that ends a metered item's
// period now. Throws on a database error; a failed send stays pending for the periodic report.
boost::asio::awaitable<void> report_usage_now(std::string tenant_id);

// The metering module: the quota step, the flush of counted API calls, the usage routes, the
// rollup and partition jobs, `hsea usage quota`.
void Register(runtime::Registrar& registrar);

}  // namespace hsea::metering
