// Usage metering and quotas (HSEA-026, HSEA-027): see metering.hpp.
#include "metering/metering.hpp"

#include <fmt/format.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <vector>

#include "billing/billing.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/problem.hpp"
#include "identity/access.hpp"
#include "jobs/jobs.hpp"
#include "metering/internal.hpp"
#include "redis/client.hpp"
#include "runtime/registrar.hpp"
#include "security/policies.hpp"

namespace hsea::metering {

Period month_of(std::int64_t now) {
  std::time_t t = static_cast<std::time_t>(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  std::int64_t start = timegm(&tm);
  tm.tm_mon += 1;  // timegm normalises December + 1
  return {start, static_cast<std::int64_t>(timegm(&tm))};
}

bool valid_meter(std::string_view name) {
  if (name.empty() || name.size() > 63 || name[0] < 'a' || name[0] > 'z') return false;
  return std::ranges::all_of(name, [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.';
  });
}

std::optional<std::int64_t> parse_rfc3339(std::string_view s) {
  auto digits = [&](std::size_t at, std::size_t n, int& out) {
    if (at + n > s.size()) return false;
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(5, 2, month) || s[7] != '-' ||
      !digits(8, 2, day) || (s[10] != 'T' && s[10] != 't') || !digits(11, 2, hour) ||
      s[13] != ':' || !digits(14, 2, minute) || s[16] != ':' || !digits(17, 2, second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60 ||
      year < 1970) {
    return std::nullopt;
  }
  std::size_t i = 19;
  if (i < s.size() && s[i] == '.') {
    std::size_t begin = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == begin || i - begin > 9) return std::nullopt;
  }
  std::int64_t offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!digits(i + 1, 2, oh) || i + 3 >= s.size() || s[i + 3] != ':' || !digits(i + 4, 2, om) ||
        oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    i += 6;
  } else {
    return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = std::min(second, 59);
  std::tm check = tm;
  std::int64_t t = timegm(&tm);
  if (tm.tm_mday != check.tm_mday) return std::nullopt;  // 31 February
  return t - offset;
}

namespace {

using boost::asio::awaitable;
using boost::json::array;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

struct Settings {
  int flush_seconds = 1;
  int late_seconds = 259200;
  std::int64_t api_calls_quota = 0;
  int soft_percent = 80;
  int hard_percent = 100;
  int rollup_seconds = 300;
  int storage_seconds = 86400;
};
const core::Section<Settings> kSettings{
    "metering",
    {core::int_setting(&Settings::flush_seconds, "HSEA_METERING_FLUSH_SECONDS", "1", 1, 60,
                       "how often each I/O thread writes the API calls it counted as usage events "
                       "and reads the tenants' counters"),
     core::int_setting(&Settings::late_seconds, "HSEA_METERING_LATE_SECONDS", "259200", 0, 2592000,
                       "how far in the past a product usage event's timestamp may lie (late "
                       "events; at most 30 days)"),
     core::int_setting(&Settings::api_calls_quota, "HSEA_QUOTA_API_CALLS", "0", 0,
                       1'000'000'000'000'000LL,
                       "API calls per period of a tenant whose plan sets no api_calls limit and "
                       "that has no override (0: unlimited)"),
     core::int_setting(&Settings::soft_percent, "HSEA_QUOTA_SOFT_PERCENT", "80", 1, 100,
                       "past this share of a quota: X-Quota-Warning and one mail per period"),
     core::int_setting(&Settings::hard_percent, "HSEA_QUOTA_HARD_PERCENT", "100", 1, 1000,
                       "at this share of a quota requests are refused (429 quota_exceeded)"),
     core::int_setting(&Settings::rollup_seconds, "HSEA_METERING_ROLLUP_SECONDS", "300", 1, 86400,
                       "how often the daily and monthly usage rollups are brought up to date"),
     core::int_setting(&Settings::storage_seconds, "HSEA_METERING_STORAGE_SECONDS", "86400", 1,
                       604800,
                       "how often every tenant's stored bytes (storage_bytes) are measured")}};
const Settings* g_settings = nullptr;

const Settings& settings() { return *g_settings; }

std::int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::int64_t seconds_of(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// The period a tenant's usage counts in: its subscription's current period, or the UTC month
// (a plan without one, such as free, or entitlements not known yet).
Period period_of(const billing::Entitlement* e, std::int64_t now) {
  if (e != nullptr && e->period_end) {
    Period p{seconds_of(e->period_start), seconds_of(*e->period_end)};
    if (p.start <= now && now < p.end) return p;
  }
  return month_of(now);
}

// A meter's quota by the tenant's plan (entitlements), else HSEA_QUOTA_API_CALLS for api_calls;
// an override replaces it (the caller applies it).
Quota plan_quota(const billing::Entitlement* e, std::string_view meter) {
  Quota q{.soft_percent = settings().soft_percent, .hard_percent = settings().hard_percent};
  if (e != nullptr) {
    q.limit = e->limit(meter);
    q.metered = e->is_metered(meter);
  }
  if (!q.limit && meter == kApiCalls && settings().api_calls_quota > 0) {
    q.limit = settings().api_calls_quota;
  }
  return q;
}

// ------------------------------------------------------------------------------- queries

#define TENANT "NULLIF(current_setting('app.tenant_id', true), '')::uuid"

// One flush of a thread's counted calls of a tenant (quantity 0: nothing to write) and the
// tenant's overrides, in one round trip.
HSEA_QUERY kFlush{"metering_flush",
                  "WITH ins AS (INSERT INTO usage_events (tenant_id, id, meter, quantity, "
                  "occurred_at) SELECT " TENANT
                  ", $1::uuid, 'api_calls', $2::bigint, now() "
                  "WHERE $2::bigint > 0 "
                  "RETURNING 1) SELECT (extract(epoch FROM now()) * 1000000)::bigint AS at_us, "
                  "o.meter, o.quota, (SELECT value FROM usage_gauges WHERE meter = "
                  "'storage_bytes') AS storage FROM (SELECT count(*) FROM ins) AS written "
                  "LEFT JOIN quota_overrides o ON true"};
HSEA_QUERY kSum{"metering_sum",
                "SELECT COALESCE(sum(quantity), 0)::bigint AS used, "
                "(extract(epoch FROM now()) * 1000000)::bigint AS at_us FROM usage_events "
                "WHERE meter = $1 AND occurred_at >= to_timestamp($2) "
                "AND occurred_at < to_timestamp($3)"};
HSEA_QUERY kRecordEvents{
    "metering_record_events",
    "WITH input AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], "
    "$4::timestamptz[], $5::text[]) AS t(id, meter, quantity, occurred_at, idempotency_key)), "
    "keyed AS (INSERT INTO usage_event_keys (tenant_id, idempotency_key) SELECT " TENANT
    ", idempotency_key FROM input WHERE idempotency_key IS NOT NULL "
    "ON CONFLICT DO NOTHING RETURNING idempotency_key) "
    "INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at, idempotency_key) "
    "SELECT " TENANT
    ", i.id, i.meter, i.quantity, i.occurred_at, i.idempotency_key FROM input i "
    "WHERE i.idempotency_key IS NULL OR i.idempotency_key IN (SELECT idempotency_key FROM keyed) "
    "RETURNING id"};
HSEA_QUERY kSummary{"metering_summary",
                    "SELECT 'used' AS kind, meter, sum(quantity)::bigint AS n FROM usage_events "
                    "WHERE occurred_at >= to_timestamp($1) AND occurred_at < to_timestamp($2) "
                    "AND meter <> 'storage_bytes' GROUP BY meter "
                    "UNION ALL SELECT 'used', meter, value FROM usage_gauges "
                    "UNION ALL SELECT 'used', 'seats', count(*) FROM memberships "
                    "UNION ALL SELECT 'quota', meter, quota FROM quota_overrides"};
HSEA_QUERY kHistory{"metering_history",
                    "SELECT meter, period_start, quantity FROM usage_rollups "
                    "WHERE granularity = $1 AND ($2::text IS NULL OR meter = $2) "
                    "AND period_start >= date_trunc($1, $3::timestamptz) "
                    "AND period_start < $4::timestamptz "
                    "ORDER BY meter, period_start LIMIT 10000"};
HSEA_QUERY kWarn{"metering_warn",
                 "INSERT INTO usage_warnings (tenant_id, meter, period_start, used, quota) "
                 "VALUES (" TENANT
                 ", $1, to_timestamp($2), $3, $4) "
                 "ON CONFLICT DO NOTHING RETURNING meter"};
HSEA_QUERY kRollup{"metering_rollup", "SELECT usage_rollup() AS days"};
HSEA_QUERY kMeasureStorage{"metering_storage_measure", "SELECT usage_storage_measure() AS tenants"};
// A change of the tenant's stored bytes (record_storage_change): the gauge moves and the new
// value is an event, in the caller's transaction.
HSEA_QUERY kStorageChange{
    "metering_storage_change",
    "WITH g AS (INSERT INTO usage_gauges (tenant_id, meter, value) VALUES (" TENANT
    ", 'storage_bytes', GREATEST(0, $1::bigint)) ON CONFLICT (tenant_id, meter) DO UPDATE SET "
    "value = GREATEST(0, usage_gauges.value + $1::bigint), measured_at = now() RETURNING value) "
    "INSERT INTO usage_events (tenant_id, id, meter, quantity, occurred_at) SELECT " TENANT
    ", $2::uuid, 'storage_bytes', value, now() FROM g RETURNING quantity"};
HSEA_QUERY kPartitions{"metering_partitions", "SELECT usage_events_add_partitions($1) AS made"};

// One tenant's seat changes at a time (until the transaction ends), then what is taken.
HSEA_QUERY kSeatLock{"metering_seat_lock",
                     "SELECT 1 AS locked FROM (SELECT pg_advisory_xact_lock(hashtextextended("
                     "'hsea.seats.' || current_setting('app.tenant_id'), 0))) AS l"};
HSEA_QUERY kSeatsTaken{
    "metering_seats_taken",
    "SELECT (SELECT count(*) FROM memberships) + CASE WHEN $1::bool THEN (SELECT count(*) FROM "
    "invitations WHERE accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()) "
    "ELSE 0 END AS taken, o.quota, o.meter IS NOT NULL AS overridden FROM (SELECT 1) AS one "
    "LEFT JOIN quota_overrides o ON o.meter = 'seats'"};

#undef TENANT

// ------------------------------------------------------------------------------ counters
//
// The real-time api_calls count of a tenant's period: a Redis hash {n, b} under a key hash-
// tagged by tenant, or the same in-process without Redis. `b` marks a counter built from the
// events table, and is the time (microseconds, the database's clock) of the sum it was built
// from: a missing counter (a new period, a Redis restart, a new process) is rebuilt from the
// rows, which already hold every written batch, so no usage is lost. Each thread adds its
// written batches with their write times, and the script adds only those written after the
// sum, so a batch another thread wrote during a Redis outage is not counted twice.

std::string counter_key(const std::string& tenant_id, std::string_view meter, std::int64_t start) {
  return fmt::format("hsea:usage:{{{}}}:{}:{}", tenant_id, meter, start);
}

// ARGV: write time, quantity, write time, quantity, ...
constexpr const char* kAddScript =
    "local b = redis.call('HGET', KEYS[1], 'b') "
    "if not b then return -1 end "
    "local t = tonumber(b) local add = 0 "
    "for i = 1, #ARGV, 2 do if tonumber(ARGV[i]) > t then add = add + tonumber(ARGV[i + 1]) end "
    "end "
    "return redis.call('HINCRBY', KEYS[1], 'n', add)";
// ARGV: the sum, its time, when the counter expires.
constexpr const char* kBuildScript =
    "if redis.call('HEXISTS', KEYS[1], 'b') == 0 then "
    "redis.call('HSET', KEYS[1], 'n', ARGV[1], 'b', ARGV[2]) "
    "redis.call('EXPIREAT', KEYS[1], ARGV[3]) end return 1";

// A thread's written batch, not yet in the counter.
struct Batch {
  std::int64_t at_us = 0;
  std::int64_t quantity = 0;
};

// Without Redis: the process's counters (the lock is taken by flushes, never by requests).
struct LocalCounter {
  std::int64_t n = 0;
  std::int64_t built_at_us = 0;
};
struct LocalCounters {
  std::mutex mutex;
  std::unordered_map<std::string, LocalCounter> built;
};
LocalCounters* g_local = nullptr;

// The counter after adding the batches written after it was built, or -1 when it must be built.
awaitable<std::int64_t> counter_add(const std::string& key, const std::vector<Batch>& batches) {
  if (redis::Client* client = redis::client()) {
    std::vector<std::string> args{"EVAL", kAddScript, "1", key};
    for (const Batch& b : batches) {
      args.push_back(std::to_string(b.at_us));
      args.push_back(std::to_string(b.quantity));
    }
    redis::Reply r = co_await client->command(std::move(args));
    if (r.is_error()) throw redis::Unavailable("counter: " + r.str);
    co_return r.integer;
  }
  std::lock_guard lock(g_local->mutex);
  auto it = g_local->built.find(key);
  if (it == g_local->built.end()) co_return -1;
  for (const Batch& b : batches) {
    if (b.at_us > it->second.built_at_us) it->second.n += b.quantity;
  }
  co_return it->second.n;
}

awaitable<void> counter_build(const std::string& key, std::int64_t value, std::int64_t at_us,
                              std::int64_t expires_at) {
  if (redis::Client* client = redis::client()) {
    std::vector<std::string> args{"EVAL",
                                  kBuildScript,
                                  "1",
                                  key,
                                  std::to_string(value),
                                  std::to_string(at_us),
                                  std::to_string(expires_at)};
    redis::Reply r = co_await client->command(std::move(args));
    if (r.is_error()) throw redis::Unavailable("counter: " + r.str);
    co_return;
  }
  std::lock_guard lock(g_local->mutex);
  g_local->built.try_emplace(key, LocalCounter{value, at_us});
}

// ------------------------------------------------------------- per-thread api_calls state

struct TenantUsage {
  Period period;
  std::int64_t counted = 0;  // the counter's value when last read (excludes owed and pending)
  std::vector<Batch> owed;   // written as events, not yet added to the counter
  std::int64_t pending = 0;  // counted by requests, not yet written
  std::int64_t writing = 0;  // taken from pending by a flush whose statement is out
  Quota quota;
  // storage_bytes as last measured (read at each flush) and its quota: routes with StoresData
  // are refused at its hard limit.
  std::int64_t storage = 0;
  Quota storage_quota;
  bool quota_loaded = false;
  bool warned = false;  // this period's warning is recorded (or another node's was)
  std::int64_t last_seen = 0;
  std::int64_t limits_read_at = 0;

  std::int64_t owed_total() const {
    std::int64_t n = 0;
    for (const Batch& b : owed) n += b.quantity;
    return n;
  }
  std::int64_t used() const { return counted + owed_total() + pending + writing; }
};
// tenant id -> state; one map per I/O thread, so requests take no lock. Only the flush erases.
thread_local std::unordered_map<std::string, TenantUsage> t_usage;

void roll_period(TenantUsage& u, std::int64_t now) {
  if (now < u.period.end && u.period.end != 0) return;
  // A new period: what was pending counts in the new one (it is written with now()).
  u.counted = 0;
  u.owed.clear();
  u.warned = false;
}

// A tenant new to this thread starts from what the thread's entitlement cache knows (the plan
// default otherwise); the flush then reads the tenant's entitlements and overrides.
TenantUsage& usage_of(const std::string& tenant_id, std::int64_t now) {
  auto [it, inserted] = t_usage.try_emplace(tenant_id);
  TenantUsage& u = it->second;
  if (inserted || now >= u.period.end) {
    std::shared_ptr<const billing::Entitlement> e = billing::Entitlements::cached(tenant_id);
    if (inserted) u.quota = plan_quota(e.get(), kApiCalls);
    roll_period(u, now);
    u.period = period_of(e.get(), now);
  }
  return u;
}

// What the quota step leaves for its `after`: the headers of a metered route.
struct QuotaHeaders {
  std::int64_t limit = 0;
  std::int64_t remaining = 0;
  std::int64_t reset = 0;
  std::string warning;
};

void set_quota_headers(Response& r, const QuotaHeaders& h) {
  r.set_header("x-quota-limit", std::to_string(h.limit));
  r.set_header("x-quota-remaining", std::to_string(h.remaining));
  r.set_header("x-quota-reset", std::to_string(h.reset));
  if (!h.warning.empty()) r.set_header("x-quota-warning", h.warning);
}

// Every authenticated tenant request to an API route counts, except on routes that declare
// Unmetered (sign-in, the signed-in user, usage and billing: metering/policies.hpp).
bool metered(const RequestContext& ctx) {
  if (ctx.tenant_id.empty() || !ctx.principal.authenticated()) return false;
  if (ctx.route() == nullptr || ctx.policy<Unmetered>() != nullptr) return false;
  return ctx.request.path.starts_with("/api/");
}

std::optional<Response> check_quota(RequestContext& ctx) {
  std::int64_t now = now_seconds();
  TenantUsage& u = usage_of(ctx.tenant_id, now);
  u.last_seen = now;
  // Storage is refused only where a route adds to it (StoresData): reading and deleting stay open,
  // so a tenant past its storage quota can still clean up.
  if (u.quota_loaded && ctx.policy<StoresData>() != nullptr &&
      u.storage_quota.exceeded(u.storage)) {
    ApiError error(ErrorCode::kQuotaExceeded,
                   fmt::format("The {} quota ({} bytes) is used up ({} stored); delete data or "
                               "upgrade the plan to store more.",
                               kStorageBytes, u.storage_quota.hard(), u.storage));
    Response r = http::problem(error, ctx.request_id);
    return r;
  }
  const Quota& q = u.quota;
  if (!q.limit) {
    ++u.pending;
    return std::nullopt;
  }
  QuotaHeaders h{.limit = q.hard(), .remaining = 0, .reset = u.period.end - now};
  std::int64_t used = u.used();
  // Refused only once the flush has read the tenant's counter and overrides: a tenant new to
  // this thread is not refused by the plan default its override may lift.
  if (u.quota_loaded && q.exceeded(used)) {
    ApiError error(ErrorCode::kQuotaExceeded,
                   fmt::format("The {} quota of this period ({}) is used up; it resets in {} s.",
                               kApiCalls, q.hard(), h.reset));
    error.retry_after(static_cast<int>(std::min<std::int64_t>(h.reset, 1 << 30)));
    Response r = http::problem(error, ctx.request_id);
    set_quota_headers(r, h);
    return r;
  }
  ++u.pending;
  ++used;
  h.remaining = q.remaining(used);
  if (q.warning(used)) {
    h.warning = fmt::format("{} {}% of {} used", kApiCalls, used * 100 / *q.limit, *q.limit);
  }
  ctx.slots.emplace<QuotaHeaders>(std::move(h));
  return std::nullopt;
}

void quota_headers(RequestContext& ctx, Response& r) {
  if (const QuotaHeaders* h = ctx.slots.find<QuotaHeaders>()) set_quota_headers(r, *h);
}

// ---------------------------------------------------------------------------- the flush

// Records the period's soft-limit warning once (the table's key dedupes across threads and
// nodes) and announces it: the mail module mails the owners and admins.
awaitable<void> warn(std::string tenant_id, Period period, std::int64_t used, std::int64_t quota,
                     bool billed) {
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(tenant_id));
  db::Result r =
      co_await tx.exec(kWarn, db::params(std::string(kApiCalls), period.start, used, quota));
  if (!r.empty()) {
    std::string data =
        boost::json::serialize(object{{"meter", kApiCalls},
                                      {"used", used},
                                      {"quota", quota},
                                      {"percent", quota > 0 ? used * 100 / quota : 100},
                                      {"period_start", rfc3339(period.start)},
                                      {"period_end", rfc3339(period.end)},
                                      {"billed", billed}});
    security::Actor actor{.kind = security::Actor::Kind::kSystem, .id = "metering"};
    co_await jobs::emit(tx, actor, "", "usage.limit_warning", std::move(data));
  }
  co_await tx.commit();
}

awaitable<void> flush_tenant(const std::string& tenant_id, TenantUsage& u, std::int64_t now) {
  // 1. The counted calls become an event row (and the overrides are read in the same trip).
  std::int64_t batch = u.pending;
  if (batch > 0 || now - u.limits_read_at >= 30 || !u.quota_loaded) {
    // Still counted while its statement is out: requests meanwhile must see it.
    u.pending -= batch;
    u.writing += batch;
    bool written = false;
    try {
      db::Result r;
      try {
        r = co_await db::pool().tenant_query(tenant_id, kFlush, db::params(core::uuid_v7(), batch));
      } catch (...) {
        u.writing -= batch;
        throw;
      }
      u.writing -= batch;
      written = true;
      if (batch > 0) u.owed.push_back(Batch{r.get_int(0, "at_us"), batch});
      std::shared_ptr<const billing::Entitlement> e = co_await billing::Entitlements::of(tenant_id);
      Period period = period_of(e.get(), now);
      if (period.start != u.period.start) {  // the subscription's period changed
        u.counted = 0;
        u.owed.clear();
        u.warned = false;
        u.period = period;
      }
      Quota q = plan_quota(e.get(), kApiCalls);
      Quota storage = plan_quota(e.get(), kStorageBytes);
      for (int i = 0; i < r.rows(); ++i) {
        Quota* target = r.get(i, "meter") == kApiCalls       ? &q
                        : r.get(i, "meter") == kStorageBytes ? &storage
                                                             : nullptr;
        if (target == nullptr) continue;
        target->limit = r.optional(i, "quota").transform([](const std::string& v) {
          return static_cast<std::int64_t>(std::stoll(v));
        });
      }
      u.quota = q;
      u.storage_quota = storage;
      u.storage = r.optional(0, "storage")
                      .transform([](const std::string& v) {
                        return static_cast<std::int64_t>(std::stoll(v));
                      })
                      .value_or(0);
      u.quota_loaded = true;
      u.limits_read_at = now;
    } catch (const std::exception& e) {
      if (!written) u.pending += batch;  // written next time: nothing is lost, nothing twice
      log::warn("usage not recorded yet", {{"tenant_id", tenant_id}, {"error", e.what()}});
      co_return;
    }
  }
  // 2. The counter: add what was written, or read it (delta 0); rebuild it when missing.
  std::string key = counter_key(tenant_id, kApiCalls, u.period.start);
  Period period = u.period;
  std::vector<Batch> owed = u.owed;
  try {
    std::int64_t total = co_await counter_add(key, owed);
    if (total < 0) {
      db::Result r = co_await db::pool().tenant_query(
          tenant_id, kSum, db::params(std::string(kApiCalls), period.start, period.end));
      co_await counter_build(key, r.get_int(0, "used"), r.get_int(0, "at_us"),
                             period.end + 7 * 86400);
      total = co_await counter_add(key, owed);  // adds only what the sum did not see
      if (total < 0) throw redis::Unavailable("the counter vanished while it was built");
    }
    if (u.period.start != period.start) co_return;  // a new period began meanwhile
    u.owed.erase(u.owed.begin(), u.owed.begin() + static_cast<std::ptrdiff_t>(owed.size()));
    u.counted = total;
  } catch (const std::exception& e) {
    log::warn("usage counter not updated", {{"tenant_id", tenant_id}, {"error", e.what()}});
    co_return;
  }
  // 3. Past the soft threshold: one warning per period.
  if (!u.warned && u.quota.warning(u.used())) {
    try {
      co_await warn(tenant_id, period, u.used(), *u.quota.limit, u.quota.metered);
      u.warned = true;
    } catch (const std::exception& e) {
      log::warn("usage warning not recorded", {{"tenant_id", tenant_id}, {"error", e.what()}});
    }
  }
}

awaitable<void> flush() {
  std::int64_t now = now_seconds();
  std::vector<std::string> tenants;
  tenants.reserve(t_usage.size());
  for (const auto& [tenant, u] : t_usage) tenants.push_back(tenant);
  for (const std::string& tenant : tenants) {
    TenantUsage& u = usage_of(tenant, now);  // references survive rehashing; only we erase
    co_await flush_tenant(tenant, u, now);
    if (u.pending == 0 && u.owed.empty() && now - u.last_seen > 600) t_usage.erase(tenant);
  }
}

// ------------------------------------------------------------------------------- routes

std::string text_array(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (const auto& v : values) {
    if (out.size() > 1) out += ',';
    if (!v) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char c : *v) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

struct NewEvent {
  std::string meter;
  std::int64_t quantity = 0;
  std::string timestamp;
  std::optional<std::string> key;
};

NewEvent parse_event(const boost::json::value& v, const std::string& at, std::int64_t now,
                     std::vector<core::FieldError>& errors) {
  NewEvent e;
  if (!v.is_object()) {
    errors.push_back({at, "must be an object"});
    return e;
  }
  const object& o = v.as_object();
  const auto* meter = o.if_contains("meter");
  if (meter == nullptr || !meter->is_string() || !valid_meter(meter->as_string())) {
    errors.push_back({at + "/meter", "must be a meter name: [a-z][a-z0-9_.]{0,62}"});
  } else {
    e.meter = std::string(meter->as_string());
    if (e.meter == kApiCalls || e.meter == kSeats || e.meter == kStorageBytes) {
      errors.push_back({at + "/meter", "is a platform meter, recorded by the platform itself"});
    }
  }
  const auto* quantity = o.if_contains("quantity");
  if (quantity == nullptr || !quantity->is_int64() || quantity->as_int64() < 0 ||
      quantity->as_int64() > 1'000'000'000'000LL) {
    if (quantity == nullptr || !quantity->is_uint64() ||
        quantity->as_uint64() > 1'000'000'000'000ULL) {
      errors.push_back({at + "/quantity", "must be an integer from 0 to 1000000000000"});
    } else {
      e.quantity = static_cast<std::int64_t>(quantity->as_uint64());
    }
  } else {
    e.quantity = quantity->as_int64();
  }
  const auto* timestamp = o.if_contains("timestamp");
  if (timestamp == nullptr || timestamp->is_null()) {
    e.timestamp = rfc3339(now);
  } else if (!timestamp->is_string()) {
    errors.push_back({at + "/timestamp", "must be an RFC 3339 date-time"});
  } else {
    std::optional<std::int64_t> t = parse_rfc3339(timestamp->as_string());
    if (!t) {
      errors.push_back({at + "/timestamp", "must be an RFC 3339 date-time"});
    } else if (*t < now - settings().late_seconds) {
      errors.push_back({at + "/timestamp", fmt::format("is older than the late-event window "
                                                       "({} s)",
                                                       settings().late_seconds)});
    } else if (*t > now + 300) {
      errors.push_back({at + "/timestamp", "lies more than 5 minutes in the future"});
    } else {
      e.timestamp = std::string(timestamp->as_string());
    }
  }
  const auto* key = o.if_contains("idempotency_key");
  if (key != nullptr && !key->is_null()) {
    if (!key->is_string() || key->as_string().empty() || key->as_string().size() > 255) {
      errors.push_back({at + "/idempotency_key", "must be 1 to 255 characters"});
    } else {
      e.key = std::string(key->as_string());
    }
  }
  for (const auto& [name, value] : o) {
    if (name != "meter" && name != "quantity" && name != "timestamp" && name != "idempotency_key") {
      errors.push_back({at + "/" + std::string(name), "is not a field of a usage event"});
    }
  }
  return e;
}

awaitable<Response> record_events(RequestContext& ctx) {
  const object& body = http::json_body(ctx);
  std::int64_t now = now_seconds();
  std::vector<core::FieldError> errors;
  std::vector<NewEvent> events;
  if (const auto* batch = body.if_contains("events")) {
    if (body.size() != 1) errors.push_back({"/", "a batch holds only `events`"});
    if (!batch->is_array() || batch->as_array().empty() || batch->as_array().size() > 1000) {
      errors.push_back({"/events", "must be an array of 1 to 1000 usage events"});
    } else {
      const array& list = batch->as_array();
      for (std::size_t i = 0; i < list.size(); ++i) {
        events.push_back(parse_event(list[i], "/events/" + std::to_string(i), now, errors));
      }
    }
  } else {
    boost::json::value single(body);
    events.push_back(parse_event(single, "", now, errors));
  }
  if (!errors.empty()) {
    if (errors.size() > 50) errors.resize(50);
    throw ApiError(ErrorCode::kValidationFailed, "Check the usage events.", std::move(errors));
  }
  // A key repeated inside one batch counts once, like a key sent before.
  std::set<std::string> keys;
  std::vector<std::optional<std::string>> ids, meters, quantities, times, idem;
  std::int64_t duplicates = 0;
  for (NewEvent& e : events) {
    if (e.key && !keys.insert(*e.key).second) {
      ++duplicates;
      continue;
    }
    ids.emplace_back(core::uuid_v7());
    meters.emplace_back(std::move(e.meter));
    quantities.emplace_back(std::to_string(e.quantity));
    times.emplace_back(std::move(e.timestamp));
    idem.push_back(std::move(e.key));
  }
  std::size_t sent = ids.size();
  db::Result r = co_await db::pool().tenant_query(
      ctx.tenant_id, kRecordEvents,
      db::params(text_array(ids), text_array(meters), text_array(quantities), text_array(times),
                 text_array(idem)));
  std::int64_t accepted = r.rows();
  duplicates += static_cast<std::int64_t>(sent) - accepted;
  co_return http::json_response(200, object{{"accepted", accepted}, {"duplicates", duplicates}});
}

object meter_json(std::string_view meter, std::int64_t used, const Quota& q, Period p) {
  object o{{"meter", meter}, {"used", used}};
  if (q.limit) {
    o["limit"] = *q.limit;
    o["soft_limit"] = q.soft();
    o["hard_limit"] = q.hard();
    o["remaining"] = q.remaining(used);
    o["state"] = q.exceeded(used) ? "exceeded" : q.warning(used) ? "warning" : "ok";
    if (q.metered) o["overage"] = std::max<std::int64_t>(0, used - *q.limit);
  } else {
    o["limit"] = nullptr;
    o["soft_limit"] = nullptr;
    o["hard_limit"] = nullptr;
    o["remaining"] = nullptr;
    o["state"] = "ok";
  }
  o["resets_at"] = rfc3339(p.end);
  o["metered"] = q.metered;
  o["kind"] = meter == kStorageBytes || meter == kSeats ? "gauge" : "counter";
  return o;
}

awaitable<Response> summary(RequestContext& ctx) {
  std::int64_t now = now_seconds();
  std::shared_ptr<const billing::Entitlement> e = co_await billing::Entitlements::of(ctx.tenant_id);
  Period p = period_of(e.get(), now);
  db::Result r =
      co_await db::pool().tenant_query(ctx.tenant_id, kSummary, db::params(p.start, p.end));
  std::map<std::string, std::int64_t> used{
      {std::string(kApiCalls), 0}, {std::string(kStorageBytes), 0}, {std::string(kSeats), 0}};
  std::map<std::string, std::optional<std::int64_t>> overrides;
  for (int i = 0; i < r.rows(); ++i) {
    std::string meter = r.text(i, "meter");
    if (r.get(i, "kind") == "used") {
      used[meter] = r.get_int(i, "n");
    } else {
      overrides[meter] = r.optional(i, "n").transform(
          [](const std::string& v) { return static_cast<std::int64_t>(std::stoll(v)); });
      used.try_emplace(meter, 0);
    }
  }
  for (const auto& [meter, limit] : e->limits) {
    if (valid_meter(meter) && meter != "requests_per_second" && meter != "burst") {
      used.try_emplace(meter, 0);
    }
  }
  // What this thread counted and has not written yet is usage too.
  if (auto it = t_usage.find(ctx.tenant_id); it != t_usage.end()) {
    used[std::string(kApiCalls)] += it->second.pending;
  }
  array meters;
  for (const auto& [meter, n] : used) {
    Quota q = plan_quota(e.get(), meter);
    if (auto o = overrides.find(meter); o != overrides.end()) q.limit = o->second;
    meters.push_back(meter_json(meter, n, q, p));
  }
  co_return http::json_response(
      200, object{{"plan_id", e->plan_id},
                  {"period", object{{"start", rfc3339(p.start)}, {"end", rfc3339(p.end)}}},
                  {"meters", std::move(meters)}});
}

std::string query_or(const RequestContext& ctx, std::string_view name, std::string fallback) {
  std::string value;
  return ctx.request.query_param(name, value) ? value : fallback;
}

awaitable<Response> history(RequestContext& ctx) {
  std::int64_t now = now_seconds();
  std::vector<core::FieldError> errors;
  std::string granularity = query_or(ctx, "granularity", "day");
  if (granularity != "day" && granularity != "month") {
    errors.push_back({"granularity", "must be day or month"});
  }
  std::optional<std::string> meter;
  std::string m;
  if (ctx.request.query_param("meter", m)) {
    if (!valid_meter(m)) errors.push_back({"meter", "must be a meter name"});
    meter = m;
  }
  auto when = [&](std::string_view name, std::int64_t fallback) -> std::int64_t {
    std::string v;
    if (!ctx.request.query_param(name, v)) return fallback;
    if (v.size() == 10) v += "T00:00:00Z";  // a date
    std::optional<std::int64_t> t = parse_rfc3339(v);
    if (!t) errors.push_back({std::string(name), "must be a date or an RFC 3339 date-time"});
    return t.value_or(fallback);
  };
  std::int64_t from = when("from", month_of(now).start);
  std::int64_t to = when("to", now + 1);
  if (errors.empty() && to <= from) errors.push_back({"to", "must be after from"});
  if (errors.empty() && to - from > 3 * 366 * 86400LL) {
    errors.push_back({"to", "the range may span at most three years"});
  }
  if (!errors.empty()) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the query.", std::move(errors));
  }
  db::Result r = co_await db::pool().tenant_query(
      ctx.tenant_id, kHistory, db::params(granularity, meter, rfc3339(from), rfc3339(to)));
  array data;
  for (int i = 0; i < r.rows(); ++i) {
    data.push_back(object{{"meter", r.get(i, "meter")},
                          {"period_start", r.time(i, "period_start")},
                          {"quantity", r.get_int(i, "quantity")}});
  }
  co_return http::json_response(200, object{{"granularity", granularity},
                                            {"from", rfc3339(from)},
                                            {"to", rfc3339(to)},
                                            {"data", std::move(data)}});
}

awaitable<void> rollup() { co_await db::pool().query(kRollup); }
awaitable<void> measure_storage() { co_await db::pool().query(kMeasureStorage); }
awaitable<void> add_partitions() { co_await db::pool().query(kPartitions, db::params(3)); }

int set_quota(const std::string& admin_url, const std::string& tenant, const std::string& meter,
              const std::string& quota) {
  if (!core::is_uuid(tenant) || !valid_meter(meter)) {
    std::fprintf(stderr, "hsea usage quota: --tenant must be a tenant id, --meter a meter name\n");
    return 2;
  }
  db::BlockingConnection conn(admin_url, "usage quota");
  conn.exec("SELECT set_config('app.tenant_id', $1, false)", {tenant});
  if (quota == "default") {
    conn.exec("DELETE FROM quota_overrides WHERE tenant_id = $1 AND meter = $2", {tenant, meter});
  } else {
    if (quota != "unlimited" && !core::parse_integer(quota, 0, 1'000'000'000'000'000LL)) {
      std::fprintf(stderr, "hsea usage quota: --quota must be a count, unlimited or default\n");
      return 2;
    }
    conn.exec(
        "INSERT INTO quota_overrides (tenant_id, meter, quota) VALUES ($1, $2, "
        "NULLIF($3, 'unlimited')::bigint) ON CONFLICT (tenant_id, meter) "
        "DO UPDATE SET quota = EXCLUDED.quota, updated_at = now()",
        {tenant, meter, quota});
  }
  std::printf("usage: quota of %s for tenant %s is now %s\n", meter.c_str(), tenant.c_str(),
              quota.c_str());
  return 0;
}

}  // namespace

awaitable<void> record_storage_change(db::Transaction& tx, std::int64_t delta_bytes) {
  std::string id = core::uuid_v7();
  co_await tx.exec(kStorageChange, db::params(delta_bytes, id));
}

awaitable<void> require_seat(db::Transaction& tx, std::string tenant_id,
                             bool with_open_invitations) {
  std::shared_ptr<const billing::Entitlement> e = co_await billing::Entitlements::of(tenant_id);
  co_await tx.exec(kSeatLock);
  db::Result r = co_await tx.exec(kSeatsTaken, db::params(with_open_invitations));
  Quota q = plan_quota(e.get(), kSeats);
  if (r.get_bool(0, "overridden")) {
    q.limit = r.optional(0, "quota").transform([](const std::string& v) {
      return static_cast<std::int64_t>(std::stoll(v));
    });
  }
  std::int64_t taken = r.get_int(0, "taken");
  if (q.limit && taken >= q.hard()) {
    throw ApiError(
        ErrorCode::kQuotaExceeded,
        fmt::format("Every seat of the plan ({}) is taken ({} members{}): remove a "
                    "member{} or upgrade the plan.",
                    q.hard(), taken, with_open_invitations ? " and open invitations" : "",
                    with_open_invitations ? ", revoke an invitation" : ""));
  }
}

void Register(runtime::Registrar& reg) {
  const Settings& s = reg.settings(kSettings);
  g_settings = &s;
  const db::Settings& database = reg.settings(db::settings_section());
  g_local = &reg.process(std::make_unique<LocalCounters>());
  jobs::event_type(reg, {"usage.limit_warning",
                         "A meter passed its soft quota threshold this period (sent once)."});

  reg.middleware({.name = "quota",
                  .stage = http::Stage::kAdmission,
                  .before = check_quota,
                  .after = quota_headers,
                  .when = metered});
  reg.periodic({.name = "metering-flush",
                .interval = std::chrono::seconds(s.flush_seconds),
                .first_delay = std::chrono::seconds(s.flush_seconds),
                .every_thread = true,
                .run = [] { return flush(); }});
  reg.periodic({.name = "metering-rollup",
                .interval = std::chrono::seconds(s.rollup_seconds),
                .once_per_cluster = true,
                .run = [] { return rollup(); }});
  reg.periodic({.name = "metering-storage",
                .interval = std::chrono::seconds(s.storage_seconds),
                .first_delay = std::chrono::seconds(std::min(s.storage_seconds, 60)),
                .once_per_cluster = true,
                .run = [] { return measure_storage(); }});
  reg.periodic({.name = "metering-partitions",
                .interval = std::chrono::hours(24),
                .once_per_cluster = true,
                .run = [] { return add_partitions(); }});

  using http::Method;
  using http::Policies;
  using identity::Access;
  const Access write{.authenticated = true,
                     .tenant = true,
                     .roles = {"owner", "admin"},
                     .scopes = {"usage:write"}};
  const Access read{.authenticated = true,
                    .tenant = true,
                    .roles = {"owner", "admin", "member"},
                    .scopes = {"usage:read"}};
  reg.route({.method = Method::kPost,
             .path = "/api/usage/events",
             .handler = record_events,
             .policies = Policies(write, Unmetered{}, security::Body{"RecordUsageRequest"})});
  reg.route({.method = Method::kGet,
             .path = "/api/usage",
             .handler = history,
             .policies = Policies(read, Unmetered{})});
  reg.route({.method = Method::kGet,
             .path = "/api/usage/summary",
             .handler = summary,
             .policies = Policies(read, Unmetered{})});

  runtime::CommandOption tenant{.name = "--tenant", .help = "the tenant's id", .required = true};
  runtime::CommandOption meter{
      .name = "--meter", .help = "the meter (api_calls, ...)", .required = true};
  runtime::CommandOption quota{
      .name = "--quota",
      .help = "a count per period, `unlimited`, or `default` (the plan's again)",
      .required = true};
  reg.command(
      {.path = {"usage", "quota"},
       .help = "set an enterprise quota override of one tenant's meter",
       .options = {tenant, meter, quota},
       .run = [&database, t = tenant.value, m = meter.value, q = quota.value](const core::Config&) {
         try {
           return set_quota(database.database_admin_url, *t, *m, *q);
         } catch (const std::exception& e) {
           std::fprintf(stderr, "hsea usage quota: %s\n", e.what());
           return 1;
         }
       }});
  register_stripe_usage(reg);
  reg.metrics([](std::string& out) {
    // Per-process facts only; usage itself is per tenant and lives in the API.
    std::size_t counters = 0;
    if (g_local != nullptr) {
      std::lock_guard lock(g_local->mutex);
      counters = g_local->built.size();
    }
    fmt::format_to(std::back_inserter(out),
                   "# HELP hsea_metering_local_counters Tenants' real-time usage counters this "
                   "process keeps itself (no Redis).\n"
                   "# TYPE hsea_metering_local_counters gauge\n"
                   "hsea_metering_local_counters {}\n",
                   counters);
  });
}

}  // namespace hsea::metering
