#include "ratelimit/gcra.hpp"

#include <algorithm>
#include <chrono>
#include <functional>

namespace hsea::ratelimit {

std::int64_t Rate::interval_us() const {
  return std::max<std::int64_t>(1, period_seconds * 1'000'000 / std::max<std::int64_t>(1, limit));
}

Step gcra(std::int64_t now, std::optional<std::int64_t> stored, const Rate& rate, int cost,
          bool peek, bool up_to) {
  const std::int64_t interval = rate.interval_us();
  const std::int64_t tolerance = rate.tolerance_us();
  std::int64_t tat = std::max(stored.value_or(now), now);
  if (up_to && !peek && cost > 0) {
    // As many as fit now; when none does, a refusal stated for one request.
    std::int64_t fits = (tolerance - (tat - now)) / interval;
    cost = static_cast<int>(std::clamp<std::int64_t>(fits, 1, cost));
  }
  std::int64_t new_tat = tat + std::int64_t{std::max(cost, 1)} * interval;
  std::int64_t allow_at = new_tat - tolerance;
  Step step;
  if (now < allow_at) {
    step.decision = {.allowed = false,
                     .remaining = std::max<std::int64_t>(0, (tolerance - (tat - now)) / interval),
                     .retry_after_us = allow_at - now,
                     .reset_us = tat - now};
    return step;
  }
  if (peek || cost <= 0) {
    step.decision = {.allowed = true,
                     .remaining = std::max<std::int64_t>(0, (tolerance - (tat - now)) / interval),
                     .retry_after_us = 0,
                     .reset_us = tat - now};
    return step;
  }
  step.decision = {.allowed = true,
                   .remaining = std::max<std::int64_t>(0, (tolerance - (new_tat - now)) / interval),
                   .retry_after_us = 0,
                   .reset_us = new_tat - now,
                   .granted = std::max(cost, 1)};
  step.store_tat_us = new_tat;
  return step;
}

// Mirrors gcra() line by line. Lua numbers are doubles: µs since the epoch (~2^51) are exact.
const std::string_view kGcraScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local peek = ARGV[4] == '1' or cost <= 0
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
if ARGV[5] == '1' and not peek then
  cost = math.max(1, math.min(cost, math.floor((tolerance - (tat - now)) / interval)))
end
local new_tat = tat + math.max(cost, 1) * interval
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, math.max(0, math.floor((tolerance - (tat - now)) / interval)), allow_at - now, tat - now, 0}
end
if peek then
  return {1, math.max(0, math.floor((tolerance - (tat - now)) / interval)), 0, tat - now, 0}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.max(0, math.floor((tolerance - (new_tat - now)) / interval)), 0, new_tat - now,
        math.max(cost, 1)}
)lua";

std::int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Decision LocalTable::check(const std::string& key, const Rate& rate, int cost, bool peek) {
  return check(key, rate, cost, peek, now_us());
}

Decision LocalTable::check(const std::string& key, const Rate& rate, int cost, bool peek,
                           std::int64_t now) {
  Shard& shard = shards_[std::hash<std::string>{}(key) % shards_.size()];
  std::lock_guard lock(shard.mutex);
  auto it = shard.tat.find(key);
  std::optional<std::int64_t> tat;
  if (it != shard.tat.end()) tat = it->second;
  Step step = gcra(now, tat, rate, cost, peek);
  if (step.store_tat_us) {
    if (it != shard.tat.end()) {
      it->second = *step.store_tat_us;
    } else {
      shard.tat.emplace(key, *step.store_tat_us);
    }
  }
  // A bucket whose TAT has passed is full again: the same as none. Forget those now and then
  // so a spray of keys (addresses) cannot grow the table without bound.
  if (++shard.steps % 4096 == 0) {
    std::erase_if(shard.tat, [now](const auto& kv) { return kv.second <= now; });
  }
  return step.decision;
}

std::int64_t lease_max(const Rate& rate) {
  return std::clamp<std::int64_t>((rate.limit + rate.capacity()) / 400, 1, kLeaseMax);
}

std::optional<Decision> Leases::take(const std::string& key, std::int64_t now) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return std::nullopt;
  Lease& l = it->second;
  if (now < l.refused_until_us) {
    return Decision{
        .allowed = false,
        .remaining = 0,
        .retry_after_us = std::max<std::int64_t>(1, l.retry_at_us - now),
        .reset_us = std::max<std::int64_t>(0, l.refused_reset_us - (now - l.refused_at_us))};
  }
  if (l.tokens <= 0 || now >= l.expires_us) return std::nullopt;
  --l.tokens;
  return Decision{.allowed = true,
                  .remaining = l.remaining + l.tokens,
                  .retry_after_us = 0,
                  .reset_us = std::max<std::int64_t>(0, l.reset_us - (now - l.granted_at_us)),
                  .granted = 1};
}

std::int64_t Leases::ask(const std::string& key, const Rate& rate, std::int64_t now) {
  // Keys come and go with tenants: past a size, forget leases that ended (and their k).
  if (leases_.size() >= 10'000 && !leases_.contains(key)) {
    std::erase_if(leases_, [now](const auto& kv) {
      return !kv.second.asking && (kv.second.tokens <= 0 || kv.second.expires_us <= now) &&
             kv.second.refused_until_us <= now;
    });
  }
  Lease& l = leases_[key];
  if (l.asking) return 0;
  if (l.granted > 0) {  // how the last lease went sets this one's size
    if (l.tokens > 0) {
      l.size = std::max<std::int64_t>(1, l.granted - l.tokens);
    } else if (now < l.expires_us) {
      l.size *= 2;
    }
  }
  l.tokens = 0;
  l.granted = 0;
  l.size = std::clamp<std::int64_t>(l.size, 1, lease_max(rate));
  l.asking = true;
  return l.size;
}

Decision Leases::granted(const std::string& key, const Rate& rate, Decision d, std::int64_t now) {
  Lease& l = leases_[key];
  l.asking = false;
  if (!d.allowed) {
    l.refused_at_us = now;
    l.retry_at_us = now + d.retry_after_us;
    l.refused_until_us = now + std::min(d.retry_after_us, kLeaseMaxUs);
    l.refused_reset_us = d.reset_us;
    return d;
  }
  if (d.granted < 1) return d;
  l.granted = d.granted;
  l.tokens = d.granted - 1;
  l.granted_at_us = now;
  l.expires_us = now + std::clamp(d.granted * rate.interval_us(), kLeaseMinUs, kLeaseMaxUs);
  l.remaining = d.remaining;
  l.reset_us = d.reset_us;
  d.remaining += l.tokens;
  d.granted = 1;
  return d;
}

void Leases::failed(const std::string& key) {
  auto it = leases_.find(key);
  if (it != leases_.end()) it->second.asking = false;
}

std::size_t LocalTable::size() {
  std::size_t n = 0;
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.tat.size();
  }
  return n;
}

}  // namespace hsea::ratelimit
