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
};

// One step: `cost` requests arriving at `now_us` on a bucket whose TAT is `tat_us` (none: never
// used or expired). `peek` asks without taking. The new TAT, when it is to be stored, lives
// new_tat - now (the bucket is full again after that, so it can be forgotten).
struct Step {
  Decision decision;
  std::optional<std::int64_t> store_tat_us;
};
Step gcra(std::int64_t now_us, std::optional<std::int64_t> tat_us, const Rate& rate, int cost,
          bool peek);

// The Lua text of the same step for Redis: KEYS[1] the bucket; ARGV interval (µs), tolerance
// (µs), cost, peek (0/1). Reads the clock with TIME, so every node uses Redis' clock. Returns
// {allowed 0/1, remaining, retry_after_us, reset_us}.
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

std::int64_t now_us();  // system clock, µs since the epoch

}  // namespace hsea::ratelimit
