// Dunning (HSEA-030): the suspension step. A tenant whose payment failed more than
// HSEA_BILLING_GRACE_DAYS ago (billing_dunning.suspend_at passed) gets 402 billing_suspended
// for every write; reads keep working, and so do the routes that let it pay.
#include "billing/dunning.hpp"

#include "billing/policies.hpp"

#include <atomic>
#include <chrono>
#include <unordered_map>

#include "core/error.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/middleware.hpp"
#include "http/router.hpp"
#include "identity/access.hpp"
#include "runtime/registrar.hpp"

namespace hsea::billing {
namespace {

using boost::asio::awaitable;
using http::RequestContext;
using http::Response;

HSEA_QUERY kSuspendAt{"billing_dunning_suspend_at",
                      "SELECT extract(epoch FROM suspend_at)::bigint AS suspend_at "
                      "FROM billing_dunning"};

// How long a thread trusts what it read about a tenant; a payment or failure on this node
// empties every thread's cache at once, other nodes see it within this.
constexpr auto kSuspensionCacheTtl = std::chrono::seconds(10);
constexpr std::size_t kSuspensionCacheMax = 20000;

std::atomic<std::uint64_t> g_epoch{1};

struct CacheEntry {
  std::chrono::steady_clock::time_point expires;
  std::optional<std::int64_t> suspend_at;  // unix seconds; none: not in dunning
};
struct Cache {
  std::uint64_t epoch = 0;
  std::unordered_map<std::string, CacheEntry> entries;
};

Cache& cache() {
  thread_local Cache c;
  std::uint64_t now = g_epoch.load(std::memory_order_acquire);
  if (c.epoch != now || c.entries.size() >= kSuspensionCacheMax) {
    c.entries.clear();
    c.epoch = now;
  }
  return c;
}

// A tenant's unsafe request on a tenant route that does not declare OpenWhenSuspended.
bool applies(const RequestContext& ctx) {
  if (http::is_safe_method(ctx.request.method)) return false;
  const auto* access = ctx.policy<identity::Access>();
  if (access == nullptr || !access->tenant || ctx.route() == nullptr) return false;
  return ctx.policy<OpenWhenSuspended>() == nullptr;
}

awaitable<Response> refuse_when_suspended(RequestContext& ctx, http::Next next) {
  if (!ctx.tenant_id.empty()) {
    Cache& c = cache();
    auto now = std::chrono::steady_clock::now();
    auto it = c.entries.find(ctx.tenant_id);
    std::uint64_t epoch = c.epoch;
    if (it == c.entries.end() || it->second.expires <= now) {
      db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kSuspendAt);
      CacheEntry entry{now + kSuspensionCacheTtl, std::nullopt};
      if (!r.empty()) entry.suspend_at = r.get_int(0, "suspend_at");
      Cache& again = cache();  // the epoch may have moved while the query ran
      if (again.epoch == epoch) again.entries[ctx.tenant_id] = entry;
      it = again.entries.find(ctx.tenant_id);
      if (it == again.entries.end()) {
        it = again.entries.emplace(ctx.tenant_id, entry).first;
        it->second.expires = now;  // used once, not kept
      }
    }
    const auto& suspend_at = it->second.suspend_at;
    auto unix_now = std::chrono::duration_cast<std::chrono::seconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
    if (suspend_at && unix_now >= *suspend_at) {
      throw core::ApiError(core::ErrorCode::kBillingSuspended,
                           "A payment failed and the grace period is over: changes are suspended "
                           "until the open invoice is paid (POST /api/invoices/{id}/pay). "
                           "Reading keeps working.");
    }
  }
  co_return co_await next(ctx);
}

}  // namespace

void invalidate_suspensions() { g_epoch.fetch_add(1, std::memory_order_release); }

void register_dunning(runtime::Registrar& reg, const InvoiceSettings&) {
  // After authorization (admission, registered by identity first): a caller who may not write
  // anyway gets 401/403, not a hint about the tenant's billing.
  reg.middleware({.name = "billing-suspension",
                  .stage = http::Stage::kAdmission,
                  .around = refuse_when_suspended,
                  .when = applies});
}

}  // namespace hsea::billing
