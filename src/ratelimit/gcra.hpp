#pragma once
// GCRA (the generic cell rate algorithm): a bucket is one number, its theoretical arrival time
// (TAT). A rate of `limit` requests per `period` spaces requests `interval` = period / limit
// apart; `burst` of them may come at once (the tolerance is burst * interval). The same step
// runs in Redis (kGcraScript, the cluster-wide bucket) and in process (LocalTable, the per-node
// fallback while Redis is unset or down), so both decide alike.
#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace hsea::ratelimit {

struct Rate {
  std::int64_t limit = 0;           // requests per period
  std::int64_t period_seconds = 1;  //
  std::int64_t burst = 0;           // at once; 0: = limit

  std::int64_t capacity() const { return burst > 0 ? burst : limit; }
  std::int64_t interval_us() const;
  std::int64_t tolerance_us() const { return interval_us() * capacity(); }
  bool operator==(const Rate&) const = default;
};

struct Decision {
  bool allowed = true;
  std::int64_t remaining = 0;       // requests that could follow at once
  std::int64_t retry_after_us = 0;  // when refused: until one would be allowed
  std::int64_t reset_us = 0;        // until the bucket is full again
  std::int64_t granted = 0;         // requests taken (cost, or fewer with up_to; 0 if refused)
};

// One step: `cost` requests arriving at `now_us` on a bucket whose TAT is `tat_us` (none: never
// used or expired). `peek` asks without taking. `up_to`: take as many of `cost` as fit, at least
// one (a lease, see Leases), refused only when not even one fits. The new TAT, when it is to be
// stored, lives new_tat - now (the bucket is full again after that, so it can be forgotten).
struct Step {
  Decision decision;
  std::optional<std::int64_t> store_tat_us;
};
Step gcra(std::int64_t now_us, std::optional<std::int64_t> tat_us, const Rate& rate, int cost,
          bool peek, bool up_to = false);

// The Lua text of the same step for Redis: KEYS[1] the bucket; ARGV interval (µs), tolerance
// (µs), cost, peek (0/1), up_to (0/1). Reads the clock with TIME, so every node uses Redis'
// clock. Returns {allowed 0/1, remaining, retry_after_us, reset_us, granted}.
extern const std::string_view kGcraScript;

// The per-node table (the fallback): thread-safe, sharded so I/O threads rarely meet on a lock;
// buckets that are full again are forgotten now and then.
class LocalTable {
 public:
  Decision check(const std::string& key, const Rate& rate, int cost, bool peek,
                 std::int64_t now_us);
  Decision check(const std::string& key, const Rate& rate, int cost, bool peek);
  std::size_t size();

 private:
  struct Shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::int64_t> tat;
    std::uint32_t steps = 0;
  };
  std::array<Shard, 16> shards_;
};

// Leases (the rate-limit step's requests on buckets of high rates). An I/O thread takes up to k
// tokens of a cluster-wide bucket in one check (gcra's up_to) and admits its next requests on
// that bucket from them without a round trip, until they are used or the lease expires. Every
// admitted request was paid for in the bucket, so leases never admit more than the bucket
// allows; they only move some admissions later (at most the lease's lifetime) and lose the
// tokens of a lease that expires unused. k is at most lease_max(rate) (0.25% of limit + burst,
// at most kLeaseMax; 1, i.e. no lease and every request exact, for smaller rates) and adapts to
// the thread's demand: doubled when a lease is used up before it expires, cut to what was used
// when it expires with tokens left. A lease lives as long as its tokens take to refill, at least
// kLeaseMinUs and at most kLeaseMaxUs.
inline constexpr std::int64_t kLeaseMax = 1024;
inline constexpr std::int64_t kLeaseMinUs = 10'000;
inline constexpr std::int64_t kLeaseMaxUs = 100'000;
std::int64_t lease_max(const Rate& rate);

// One thread's leases (no lock: use from one thread only).
class Leases {
 public:
  // A request admitted from the lease of `key`, or refused because the bucket refused this
  // thread less than its retry-after ago (at most kLeaseMaxUs, so a restarted Redis is seen
  // soon): a bucket's TAT never moves back, so no request could fit before then; nullopt when
  // the lease is used up, expired or none: then ask().
  std::optional<Decision> take(const std::string& key, std::int64_t now_us);
  // How many tokens to ask the bucket for (with up_to), this request's one included; 0 when
  // this thread's request for a lease of `key` is already on its way: then check this request
  // alone. A non-zero answer must be followed by granted() or failed().
  std::int64_t ask(const std::string& key, const Rate& rate, std::int64_t now_us);
  // The bucket's answer to ask(): this request takes one token, the lease keeps the rest. The
  // decision for this request (remaining counts the lease's tokens).
  Decision granted(const std::string& key, const Rate& rate, Decision d, std::int64_t now_us);
  // The bucket could not be asked (Redis failed): no lease.
  void failed(const std::string& key);
  std::size_t size() const { return leases_.size(); }

 private:
  struct Lease {
    std::int64_t tokens = 0;  // granted, not yet admitted
    std::int64_t granted = 0;
    std::int64_t granted_at_us = 0;
    std::int64_t expires_us = 0;
    std::int64_t remaining = 0;  // the bucket's answer at the grant (the lease's tokens not in it)
    std::int64_t reset_us = 0;   //
    std::int64_t size = 1;       // the next request's k
    bool asking = false;
    std::int64_t refused_at_us = 0;     // the bucket's last refusal of this thread
    std::int64_t refused_until_us = 0;  // refusals from memory until then
    std::int64_t retry_at_us = 0;       // when one request fits
    std::int64_t refused_reset_us = 0;  // the refusal's reset
  };
  std::unordered_map<std::string, Lease> leases_;
};

std::int64_t now_us();  // system clock, µs since the epoch

}  // namespace hsea::ratelimit
