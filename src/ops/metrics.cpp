#include "ops/metrics.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <vector>

#include "http/router.hpp"

namespace hsea::ops {
namespace {

constexpr std::array kStatuses{200, 201, 202, 204, 301, 302, 304, 400, 401, 402, 403, 404, 405,
                               409, 410, 412, 413, 415, 422, 429, 431, 500, 502, 503, 504};
constexpr std::size_t kOtherStatus = kStatuses.size();
constexpr std::size_t kStatusSlots = kStatuses.size() + 1;
constexpr std::size_t kMethods = static_cast<std::size_t>(http::Method::kOther) + 1;
constexpr std::array kBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                              0.1,    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};

std::size_t status_slot(int status) {
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) return i;
  }
  return kOtherStatus;
}

struct RouteSlot {
  std::array<std::atomic<std::uint64_t>, kMethods * kStatusSlots> counts{};
  std::array<std::atomic<std::uint64_t>, kBuckets.size()> buckets{};
  std::atomic<std::uint64_t> observations{0};
  std::atomic<std::uint64_t> nanos{0};
};

struct alignas(64) ThreadSlots {
  explicit ThreadSlots(std::size_t routes) : routes(routes) {}
  std::vector<RouteSlot> routes;
};

std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * sysconf(_SC_PAGESIZE);
}

long open_fds() {
  std::error_code ec;
  long n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace

struct Metrics::Impl {
  std::vector<std::string> route_names;  // index = route id; last = "unmatched"
  std::vector<std::unique_ptr<ThreadSlots>> threads;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started_steady = std::chrono::steady_clock::now();
  mutable std::mutex sources_mutex;
  std::vector<std::function<void(std::string&)>> sources;
};

Metrics::Metrics(int threads, const http::Router& router) : impl_(std::make_unique<Impl>()) {
  for (const auto& route : router.routes()) impl_->route_names.push_back(route->path);
  impl_->route_names.push_back("unmatched");
  for (int i = 0; i < threads; ++i) {
    impl_->threads.push_back(std::make_unique<ThreadSlots>(impl_->route_names.size()));
  }
}

Metrics::~Metrics() = default;

void Metrics::record_request(int thread, const http::Route* route, http::Method method, int status,
                             double seconds) {
  std::size_t route_index = route ? route->id : impl_->route_names.size() - 1;
  RouteSlot& slot = impl_->threads[thread]->routes[route_index];
  auto count_index = static_cast<std::size_t>(method) * kStatusSlots + status_slot(status);
  slot.counts[count_index].fetch_add(1, std::memory_order_relaxed);
  for (std::size_t b = 0; b < kBuckets.size(); ++b) {
    if (seconds <= kBuckets[b]) {
      slot.buckets[b].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  slot.observations.fetch_add(1, std::memory_order_relaxed);
  slot.nanos.fetch_add(static_cast<std::uint64_t>(seconds * 1e9), std::memory_order_relaxed);
}

void Metrics::add_source(std::function<void(std::string&)> source) {
  std::lock_guard lock(impl_->sources_mutex);
  impl_->sources.push_back(std::move(source));
}

std::string Metrics::render() const {
  std::string out;
  auto inserter = std::back_inserter(out);
  const std::size_t routes = impl_->route_names.size();

  out += "# HELP hsea_http_requests_total HTTP requests by route, method and status.\n";
  out += "# TYPE hsea_http_requests_total counter\n";
  for (std::size_t r = 0; r < routes; ++r) {
    for (std::size_t m = 0; m < kMethods; ++m) {
      for (std::size_t s = 0; s < kStatusSlots; ++s) {
        std::uint64_t total = 0;
        for (const auto& t : impl_->threads) {
          total += t->routes[r].counts[m * kStatusSlots + s].load(std::memory_order_relaxed);
        }
        if (total == 0) continue;
        fmt::format_to(
            inserter, "hsea_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {}\n",
            escape_label(impl_->route_names[r]), http::method_name(static_cast<http::Method>(m)),
            s == kOtherStatus ? std::string("other") : std::to_string(kStatuses[s]), total);
      }
    }
  }

  out += "# HELP hsea_http_request_duration_seconds Time from request read to response ready.\n";
  out += "# TYPE hsea_http_request_duration_seconds histogram\n";
  for (std::size_t r = 0; r < routes; ++r) {
    std::uint64_t observations = 0, nanos = 0;
    std::array<std::uint64_t, kBuckets.size()> buckets{};
    for (const auto& t : impl_->threads) {
      const RouteSlot& slot = t->routes[r];
      observations += slot.observations.load(std::memory_order_relaxed);
      nanos += slot.nanos.load(std::memory_order_relaxed);
      for (std::size_t b = 0; b < kBuckets.size(); ++b) {
        buckets[b] += slot.buckets[b].load(std::memory_order_relaxed);
      }
    }
    if (observations == 0) continue;
    auto label = escape_label(impl_->route_names[r]);
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < kBuckets.size(); ++b) {
      cumulative += buckets[b];
      fmt::format_to(inserter,
                     "hsea_http_request_duration_seconds_bucket{{route=\"{}\",le=\"{}\"}} {}\n",
                     label, kBuckets[b], cumulative);
    }
    fmt::format_to(inserter,
                   "hsea_http_request_duration_seconds_bucket{{route=\"{}\",le=\"+Inf\"}} {}\n",
                   label, observations);
    fmt::format_to(inserter, "hsea_http_request_duration_seconds_sum{{route=\"{}\"}} {:.9f}\n",
                   label, static_cast<double>(nanos) / 1e9);
    fmt::format_to(inserter, "hsea_http_request_duration_seconds_count{{route=\"{}\"}} {}\n", label,
                   observations);
  }

  auto uptime =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - impl_->started_steady)
          .count();
  fmt::format_to(
      inserter,
      "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
      "# TYPE process_resident_memory_bytes gauge\n"
      "process_resident_memory_bytes {}\n"
      "# HELP process_open_fds Number of open file descriptors.\n"
      "# TYPE process_open_fds gauge\n"
      "process_open_fds {}\n"
      "# HELP process_start_time_seconds Start time of the process since unix epoch.\n"
      "# TYPE process_start_time_seconds gauge\n"
      "process_start_time_seconds {}\n"
      "# HELP hsea_uptime_seconds Seconds since the server started.\n"
      "# TYPE hsea_uptime_seconds gauge\n"
      "hsea_uptime_seconds {:.3f}\n",
      resident_bytes(), open_fds(),
      std::chrono::duration_cast<std::chrono::seconds>(impl_->started.time_since_epoch()).count(),
      uptime);

  std::lock_guard lock(impl_->sources_mutex);
  for (const auto& source : impl_->sources) source(out);
  return out;
}

}  // namespace hsea::ops
