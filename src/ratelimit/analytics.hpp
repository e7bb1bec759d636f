#pragma once
// Internal: what the reports show of this node's analytics.
#include <boost/asio/awaitable.hpp>

#include <string>
#include <vector>

namespace hsea::ratelimit {

struct Anomaly {
  std::string tenant_id;
  double rate = 0;      // requests per second in the flagged interval
  double baseline = 0;  // the trailing mean before it
  std::string at;       // RFC 3339
};
std::vector<Anomaly> recent_anomalies();

// Merges this thread's counts and writes everything pending (tests, the report).
boost::asio::awaitable<void> flush_now();

}  // namespace hsea::ratelimit
