// Tenant admins' view of their jobs (GET /api/jobs, retry, cancel) and the operator's
// (`hsea jobs list|retry|cancel`, every tenant, through the schema owner's connection).
#include <fmt/format.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <unistd.h>

#include <cstdio>

#include "core/config.hpp"
#include "core/error.hpp"
#include "core/ids.hpp"
#include "db/blocking.hpp"
#include "db/db.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "jobs/queue.hpp"
#include "runtime/registrar.hpp"
#include "security/audit.hpp"

namespace hsea::jobs {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

constexpr const char* kColumns =
    "id, kind, status, priority, attempts, max_attempts, last_error, run_at, created_at, "
    "updated_at, started_at, finished_at";

// Newest first; the cursor is the last id seen (UUIDv7 ids sort by creation).
HSEA_QUERY kList{"jobs_list",
                 "SELECT id, kind, status, priority, attempts, max_attempts, last_error, run_at, "
                 "created_at, updated_at, started_at, finished_at FROM jobs "
                 "WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR kind = $2) "
                 "AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"};
HSEA_QUERY kGet{"jobs_get",
                "SELECT id, kind, status, priority, attempts, max_attempts, last_error, run_at, "
                "created_at, updated_at, started_at, finished_at FROM jobs WHERE id = $1"};
// A failed or cancelled job runs again from its first attempt, behind its tenant's queue.
HSEA_QUERY kRetry{
    "jobs_retry",
    "UPDATE jobs SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL, "
    "fair_tag = jobs_fair_tag(tenant_id), updated_at = now() "
    "WHERE id = $1 AND status IN ('failed', 'cancelled') "
    "RETURNING id, kind, status, priority, attempts, max_attempts, last_error, run_at, "
    "created_at, updated_at, started_at, finished_at"};
// A queued job (also one waiting for its retry) or a failed one can be cancelled; a running
// one cannot be taken from its worker.
HSEA_QUERY kCancel{
    "jobs_cancel",
    "UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now() "
    "WHERE id = $1 AND status IN ('queued', 'failed') "
    "RETURNING id, kind, status, priority, attempts, max_attempts, last_error, run_at, "
    "created_at, updated_at, started_at, finished_at"};

object job_json(const db::Result& r, int row) {
  return object{{"id", r.get(row, "id")},
                {"kind", r.get(row, "kind")},
                {"status", r.get(row, "status")},
                {"priority", r.get_int(row, "priority")},
                {"attempts", r.get_int(row, "attempts")},
                {"max_attempts", r.get_int(row, "max_attempts")},
                {"last_error", r.nullable(row, "last_error")},
                {"run_at", r.time(row, "run_at")},
                {"created_at", r.time(row, "created_at")},
                {"updated_at", r.time(row, "updated_at")},
                {"started_at", r.nullable_time(row, "started_at")},
                {"finished_at", r.nullable_time(row, "finished_at")}};
}

std::optional<std::string> status_filter(const RequestContext& ctx) {
  std::string value;
  if (!ctx.request.query_param("status", value) || value.empty()) return std::nullopt;
  if (value != "queued" && value != "running" && value != "succeeded" && value != "failed" &&
      value != "cancelled") {
    throw ApiError(ErrorCode::kValidationFailed, "Check the query parameters.",
                   {{"status", "must be queued, running, succeeded, failed or cancelled"}});
  }
  return value;
}

std::optional<std::string> kind_filter(const RequestContext& ctx) {
  std::string value;
  if (!ctx.request.query_param("kind", value) || value.empty()) return std::nullopt;
  if (find_kind(value) == nullptr) {
    throw ApiError(ErrorCode::kValidationFailed, "Check the query parameters.",
                   {{"kind", "is not a job kind"}});
  }
  return value;
}

std::string job_id(const RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such job.");
  return id;
}

awaitable<Response> list_jobs(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  db::Result r = co_await db::pool().tenant_query(
      ctx.tenant_id, kList,
      db::params(status_filter(ctx), kind_filter(ctx), page.starting_after, page.fetch()));
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(job_json(r, i));
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> get_job(RequestContext& ctx) {
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kGet, db::params(job_id(ctx)));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such job.");
  co_return http::json_response(200, job_json(r, 0));
}

// Retry and cancel: change the job if its status allows, audited in the same transaction;
// otherwise 404 (not this tenant's) or 409 (its status does not allow it).
awaitable<Response> change_job(RequestContext& ctx, const db::Query& change, std::string action,
                               std::string refusal) {
  std::string id = job_id(ctx);
  db::Transaction tx = co_await db::pool().begin(db::tenant_scope(ctx.tenant_id));
  db::Result r = co_await tx.exec(change, db::params(id));
  if (r.empty()) {
    db::Result existing = co_await tx.exec(kGet, db::params(id));
    co_await tx.commit();
    if (existing.empty()) throw ApiError(ErrorCode::kNotFound, "No such job.");
    throw ApiError(ErrorCode::kConflict,
                   fmt::format("{} (it is {}).", refusal, existing.get(0, "status")));
  }
  co_await security::record(tx, ctx, security::event(action, "job", id));
  co_await tx.commit();
  co_return http::json_response(200, job_json(r, 0));
}

awaitable<Response> retry_job(RequestContext& ctx) {
  return change_job(ctx, kRetry, "job.retried", "Only a failed or cancelled job can be retried");
}

awaitable<Response> cancel_job(RequestContext& ctx) {
  return change_job(ctx, kCancel, "job.cancelled", "Only a queued or failed job can be cancelled");
}

// ------------------------------------------------------------------------------ commands

int operator_command(const char* name, const std::function<void(db::BlockingConnection&)>& run,
                     const std::string& admin_url) {
  try {
    db::BlockingConnection conn(admin_url, name);
    run(conn);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hsea %s: %s\n", name, e.what());
    return 1;
  }
}

}  // namespace

void register_routes(runtime::Registrar& reg) {
  using http::Method;
  const std::vector<std::string> admins{"owner", "admin"};
  const identity::Access read{
      .authenticated = true, .tenant = true, .roles = admins, .scopes = {"jobs:read"}};
  const identity::Access write{
      .authenticated = true, .tenant = true, .roles = admins, .scopes = {"jobs:write"}};
  using Route = std::tuple<Method, const char*, http::Handler, const identity::Access*>;
  for (auto [method, path, handler, access] :
       {Route{Method::kGet, "/api/jobs", list_jobs, &read},
        Route{Method::kGet, "/api/jobs/{id}", get_job, &read},
        Route{Method::kPost, "/api/jobs/{id}/retry", retry_job, &write},
        Route{Method::kPost, "/api/jobs/{id}/cancel", cancel_job, &write}}) {
    reg.route(
        {.method = method, .path = path, .handler = handler, .policies = http::Policies(*access)});
  }
}

void register_commands(runtime::Registrar& reg) {
  const std::string* admin_url = &reg.settings(db::settings_section()).database_admin_url;
  runtime::CommandOption status{.name = "--status", .help = "only jobs with this status"};
  runtime::CommandOption tenant{.name = "--tenant", .help = "only this tenant's jobs"};
  runtime::CommandOption limit{.name = "--limit", .help = "at most this many (default 50)"};
  reg.command(
      {.path = {"jobs", "list"},
       .help = "list jobs of every tenant, newest first",
       .options = {status, tenant, limit},
       .run = [status = status.value, tenant = tenant.value, limit = limit.value,
               admin_url](const core::Config&) {
         return operator_command(
             "jobs list",
             [&](db::BlockingConnection& conn) {
               db::Result r = conn.exec(
                   fmt::format("SELECT {}, COALESCE(tenant_id::text, '-') AS tenant FROM jobs "
                               "WHERE ($1 = '' OR status = $1) "
                               "AND ($2 = '' OR tenant_id::text = $2) "
                               "ORDER BY id DESC LIMIT COALESCE(NULLIF($3, '')::int, 50)",
                               kColumns),
                   {*status, *tenant, *limit});
               for (int i = 0; i < r.rows(); ++i) {
                 std::printf("%s  %-36s  %-9s  %-24s  attempts %lld/%lld  %s\n",
                             r.text(i, "id").c_str(), r.text(i, "tenant").c_str(),
                             r.text(i, "status").c_str(), r.text(i, "kind").c_str(),
                             static_cast<long long>(r.get_int(i, "attempts")),
                             static_cast<long long>(r.get_int(i, "max_attempts")),
                             r.text(i, "last_error").c_str());
               }
             },
             *admin_url);
       }});
  reg.command(
      {.path = {"jobs", "ping"},
       .help = "enqueue a no-op job and wait until a worker has run it (queue round trip)",
       .run = [admin_url](const core::Config&) {
         return operator_command(
             "jobs ping",
             [&](db::BlockingConnection& conn) {
               std::string id = conn.exec("SELECT jobs_enqueue('jobs.ping', '{}', 0, 0, 1, NULL)")
                                    .text(0, "jobs_enqueue");
               for (int i = 0; i < 1000; ++i) {
                 db::Result r = conn.exec(
                     "SELECT status, EXTRACT(epoch FROM finished_at - created_at) * 1000 AS ms "
                     "FROM jobs WHERE id = $1",
                     {id});
                 if (r.text(0, "status") == "succeeded") {
                   std::printf("job %s ran %.1f ms after it was enqueued\n", id.c_str(),
                               std::stod(r.text(0, "ms")));
                   return;
                 }
                 usleep(10000);
               }
               throw std::runtime_error("no worker ran the job within 10 s (is one running?)");
             },
             *admin_url);
       }});
  runtime::CommandOption priority_tenant{
      .name = "tenant", .help = "the tenant's id", .required = true};
  runtime::CommandOption priority{.name = "priority",
                                  .help = "-50..50, added to every job the tenant enqueues",
                                  .required = true};
  reg.command({.path = {"jobs", "priority"},
               .help = "set a tenant's job priority (its later jobs run ahead of lower ones)",
               .options = {priority_tenant, priority},
               .run = [tenant = priority_tenant.value, value = priority.value,
                       admin_url](const core::Config&) {
                 return operator_command(
                     "jobs priority",
                     [&](db::BlockingConnection& conn) {
                       if (!core::is_uuid(*tenant)) throw std::runtime_error("not a tenant id");
                       db::Result r = conn.exec(
                           "UPDATE tenants SET job_priority = $2::smallint WHERE id = $1 "
                           "RETURNING job_priority",
                           {*tenant, *value});
                       if (r.empty()) throw std::runtime_error("no such tenant");
                       std::printf("tenant %s: job priority %s\n", tenant->c_str(),
                                   r.text(0, "job_priority").c_str());
                     },
                     *admin_url);
               }});
  for (auto [verb, query, help] :
       {std::tuple{"retry", &kRetry, "run a failed or cancelled job again"},
        std::tuple{"cancel", &kCancel, "cancel a queued or failed job"}}) {
    runtime::CommandOption id{.name = "id", .help = "the job's id", .required = true};
    reg.command({.path = {"jobs", verb},
                 .help = help,
                 .options = {id},
                 .run = [verb, query, id = id.value, admin_url](const core::Config&) {
                   std::string name = std::string("jobs ") + verb;
                   return operator_command(
                       name.c_str(),
                       [&](db::BlockingConnection& conn) {
                         if (!core::is_uuid(*id)) throw std::runtime_error("not a job id");
                         db::Result r = conn.exec(query->sql, {*id});
                         if (r.empty()) {
                           throw std::runtime_error(
                               "no such job, or its status does not allow "
                               "that");
                         }
                         std::printf("job %s is now %s\n", id->c_str(),
                                     r.text(0, "status").c_str());
                       },
                       *admin_url);
                 }});
  }
}

}  // namespace hsea::jobs
