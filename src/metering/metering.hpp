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
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hsea::runtime {
class Registrar;
}

namespace hsea::metering {

inline constexpr std::string_view kApiCalls = "api_calls";
inline constexpr std::string_view kSeats = "seats";
inline constexpr std::string_view kStorageBytes = "storage_bytes";

// A route policy: the route is neither counted nor refused for quota (the usage routes
// themselves; billing, so a tenant past its quota can still see it and upgrade).
struct Unmetered {};

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
  bool exceeded(std::int64_t used) const { return limit && used >= hard(); }
  bool warning(std::int64_t used) const { return limit && used >= soft(); }
  std::int64_t remaining(std::int64_t used) const {
    return limit ? (used >= hard() ? 0 : hard() - used) : 0;
  }
};

// An RFC 3339 date-time ("2026-12-06T04:00:00Z", "...05.25+01:00") as Unix seconds, or nullopt.
std::optional<std::int64_t> parse_rfc3339(std::string_view text);
// A meter name: [a-z][a-z0-9_.]{0,62}.
bool valid_meter(std::string_view name);

// The metering module: the quota step, the flush of counted API calls, the usage routes, the
// rollup and partition jobs, `hsea usage quota`.
void Register(runtime::Registrar& registrar);

}  // namespace hsea::metering
