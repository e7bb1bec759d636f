#include "security/refusals.hpp"

#include <fmt/format.h>
#include <boost/json/serialize.hpp>

#include <atomic>
#include <exception>
#include <iterator>
#include <unordered_map>

#include "core/log.hpp"
#include "http/context.hpp"
#include "security/audit.hpp"

namespace hsea::security {
namespace {

constexpr int kKinds = 2;
std::atomic<std::int64_t> g_refused[kKinds];
std::atomic<std::int64_t> g_audited[kKinds];
constexpr std::size_t kMaxTenants = 10000;

std::string_view kind_name(Refusal kind) { return kind == Refusal::kCsrf ? "csrf" : "cors"; }

// Per I/O thread, so the sampler never locks. Bounded: when full it is emptied, which at worst
// lets one more entry per tenant through.
struct Sampler {
  struct Slot {
    std::chrono::steady_clock::time_point last_written;
    std::int64_t suppressed = 0;
  };
  std::unordered_map<std::string, Slot> slots;

  // Whether to write now; `suppressed` gets the count to report.
  bool admit(const std::string& key, std::int64_t& suppressed) {
    auto now = std::chrono::steady_clock::now();
    if (slots.size() >= kMaxTenants) slots.clear();
    auto [it, fresh] = slots.try_emplace(key);
    if (!fresh && now - it->second.last_written < kRefusalAuditInterval) {
      ++it->second.suppressed;
      return false;
    }
    suppressed = it->second.suppressed;
    it->second = {now, 0};
    return true;
  }
};

Sampler& sampler() {
  thread_local Sampler s;
  return s;
}

}  // namespace

boost::asio::awaitable<void> audit_refusal(const http::RequestContext& ctx, RefusalEvent e) {
  int kind = static_cast<int>(e.kind);
  g_refused[kind].fetch_add(1, std::memory_order_relaxed);
  if (e.tenant_id.empty()) co_return;
  std::int64_t suppressed = 0;
  std::string key = fmt::format("{}|{}", kind_name(e.kind), e.tenant_id);
  if (!sampler().admit(key, suppressed)) co_return;
  e.metadata["suppressed"] = suppressed;
  AuditEvent entry{.action = std::move(e.action),
                   .target_type = std::move(e.target_type),
                   .target_id = std::move(e.target_id),
                   .metadata = boost::json::serialize(e.metadata),
                   .actor_type = std::move(e.actor_type),
                   .actor_id = std::move(e.actor_id)};
  try {
    co_await record_in(e.tenant_id, ctx, std::move(entry));
    g_audited[kind].fetch_add(1, std::memory_order_relaxed);
  } catch (const std::exception& error) {
    log::warn("refusal not audited", {{"request_id", ctx.request_id},
                                      {"tenant_id", e.tenant_id},
                                      {"kind", kind_name(e.kind)},
                                      {"error", error.what()}});
  }
}

void append_refusal_metrics(std::string& out) {
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP hsea_security_refusals_total Requests refused by the CSRF check or "
                 "refused CORS access.\n# TYPE hsea_security_refusals_total counter\n");
  for (Refusal k : {Refusal::kCsrf, Refusal::kCors}) {
    fmt::format_to(it, "hsea_security_refusals_total{{kind=\"{}\"}} {}\n", kind_name(k),
                   g_refused[static_cast<int>(k)].load(std::memory_order_relaxed));
  }
  fmt::format_to(it,
                 "# HELP hsea_security_refusal_audits_total Refusals written to the audit log "
                 "(sampled per tenant).\n# TYPE hsea_security_refusal_audits_total counter\n");
  for (Refusal k : {Refusal::kCsrf, Refusal::kCors}) {
    fmt::format_to(it, "hsea_security_refusal_audits_total{{kind=\"{}\"}} {}\n", kind_name(k),
                   g_audited[static_cast<int>(k)].load(std::memory_order_relaxed));
  }
}

}  // namespace hsea::security
