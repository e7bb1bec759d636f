// The transactional outbox: emit() writes a domain event and its subscribers' jobs in the
// transaction of the change; GET /api/events shows a tenant its own events.
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>

#include <regex>

#include "core/error.hpp"
#include "core/ids.hpp"
#include "core/log.hpp"
#include "db/db.hpp"
#include "http/context.hpp"
#include "http/json.hpp"
#include "http/page.hpp"
#include "identity/access.hpp"
#include "jobs/queue.hpp"
#include "runtime/registrar.hpp"

namespace hsea::jobs {
namespace {

using boost::asio::awaitable;
using boost::json::object;
using core::ApiError;
using core::ErrorCode;
using http::RequestContext;
using http::Response;

// One statement: the event, then one job per subscriber kind, all in the caller's transaction.
HSEA_QUERY kEmit{
    "events_emit",
    "WITH e AS (INSERT INTO events (tenant_id, type, data, actor_type, actor_id, request_id) "
    "VALUES (current_setting('app.tenant_id')::uuid, $1, $2::jsonb, $3, $4, $5) RETURNING id), "
    "wake AS (SELECT set_config('hsea.jobs_wake', 'after_commit', true)) "
    "SELECT e.id, (SELECT count(jobs_enqueue(s.kind, jsonb_build_object('event_id', e.id, "
    "'type', $1::text), s.priority, 0, s.attempts, 'event:' || e.id || ':' || s.kind)) "
    "FROM unnest($6::text[], $7::int[], $8::int[]) AS s(kind, priority, attempts)) AS jobs "
    "FROM e, wake"};
HSEA_QUERY kEvent{"events_get",
                  "SELECT id, type, data::text AS data, actor_type, actor_id, request_id, "
                  "created_at FROM events WHERE id = $1"};
HSEA_QUERY kList{"events_list",
                 "SELECT id, type, data::text AS data, actor_type, actor_id, request_id, "
                 "created_at FROM events WHERE ($1::text IS NULL OR type = $1) "
                 "AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"};

std::vector<EventType>& declared_types() { return state().event_types; }
std::vector<Subscription>& subscriptions() { return state().subscriptions; }

bool declared(const std::string& type) {
  for (const EventType& t : declared_types()) {
    if (t.type == type) return true;
  }
  return false;
}

std::string int_array(const std::vector<int>& values) {
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + std::to_string(values[i]);
  return out + "}";
}
std::string text_array(const std::vector<std::string>& values) {  // kinds: no quoting needed
  std::string out = "{";
  for (std::size_t i = 0; i < values.size(); ++i) out += (i ? "," : "") + values[i];
  return out + "}";
}

Event event_from(const db::Result& r, int row) {
  return Event{r.text(row, "id"),         r.text(row, "type"),     r.text(row, "data"),
               r.text(row, "actor_type"), r.text(row, "actor_id"), r.text(row, "request_id"),
               r.time(row, "created_at")};
}

object event_json(const Event& e) {
  boost::system::error_code ec;
  boost::json::value data = boost::json::parse(e.data, ec);
  return object{{"id", e.id},
                {"type", e.type},
                {"data", ec ? boost::json::value(object{}) : data},
                {"actor", object{{"type", e.actor_type}, {"id", e.actor_id}}},
                {"request_id", e.request_id},
                {"created_at", e.created_at}};
}

awaitable<Response> list_events(RequestContext& ctx) {
  http::Page page = http::page_of(ctx);
  std::optional<std::string> type;
  std::string value;
  if (ctx.request.query_param("type", value) && !value.empty()) {
    if (!declared(value)) {
      throw ApiError(ErrorCode::kValidationFailed, "Check the query parameters.",
                     {{"type", "is not an event type (see GET /api/events/types)"}});
    }
    type = value;
  }
  db::Result r = co_await db::pool().tenant_query(
      ctx.tenant_id, kList, db::params(type, page.starting_after, page.fetch()));
  boost::json::array data;
  for (int i = 0; i < r.rows(); ++i) data.push_back(event_json(event_from(r, i)));
  co_return http::json_response(200, http::page_json(std::move(data), page));
}

awaitable<Response> get_event(RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!core::is_uuid(id)) throw ApiError(ErrorCode::kNotFound, "No such event.");
  db::Result r = co_await db::pool().tenant_query(ctx.tenant_id, kEvent, db::params(id));
  if (r.empty()) throw ApiError(ErrorCode::kNotFound, "No such event.");
  co_return http::json_response(200, event_json(event_from(r, 0)));
}

awaitable<Response> list_types(RequestContext&) {
  boost::json::array data;
  for (const EventType& t : declared_types()) {
    data.push_back(object{{"type", t.type}, {"description", t.description}});
  }
  co_return http::json_response(200, object{{"data", std::move(data)}});
}

}  // namespace

void event_type(runtime::Registrar&, EventType type) {
  static const std::regex kType("^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$");
  if (!std::regex_match(type.type, kType) || declared(type.type)) {
    throw std::logic_error("event type " + type.type + " is malformed or declared twice");
  }
  declared_types().push_back(std::move(type));
}

const std::vector<EventType>& event_types() { return declared_types(); }

void subscribe(runtime::Registrar&, Subscription subscription) {
  if (find_kind(subscription.kind) == nullptr) {
    throw std::logic_error("subscription of an undefined job kind " + subscription.kind);
  }
  subscriptions().push_back(std::move(subscription));
}

awaitable<std::string> emit(db::Transaction& tx, security::Actor actor, std::string request_id,
                            std::string type, std::string data) {
  if (!declared(type)) throw std::logic_error("emit of an undeclared event type " + type);
  std::vector<std::string> kinds;
  std::vector<int> priorities, attempts;
  for (const Subscription& s : subscriptions()) {
    bool wanted =
        s.types.empty() || std::find(s.types.begin(), s.types.end(), type) != s.types.end();
    const Kind* kind = find_kind(s.kind);
    if (!wanted || kind == nullptr) continue;
    kinds.push_back(s.kind);
    priorities.push_back(kind->priority);
    attempts.push_back(kind->max_attempts);
  }
  db::Result r = co_await tx.exec(
      kEmit, db::params(type, data, security::actor_type(actor.kind), actor.id, request_id,
                        text_array(kinds), int_array(priorities), int_array(attempts)));
  if (!kinds.empty()) tx.after_commit(wake_after_commit);
  co_return r.text(0, "id");
}

awaitable<std::string> emit(db::Transaction& tx, const http::RequestContext& ctx, std::string type,
                            std::string data) {
  std::string id =
      co_await emit(tx, security::actor_of(ctx), ctx.request_id, std::move(type), std::move(data));
  co_return id;
}

awaitable<std::optional<Event>> event_of(JobContext& job) {
  const auto* id = job.payload().if_contains("event_id");
  if (id == nullptr || !id->is_string()) co_return std::nullopt;
  db::Transaction* tx = co_await job.transaction();
  db::Result r = co_await tx->exec(kEvent, db::params(std::string(id->as_string())));
  if (r.empty()) co_return std::nullopt;
  co_return event_from(r, 0);
}

void register_event_routes(runtime::Registrar& reg) {
  using http::Method;
  const identity::Access read{.authenticated = true,
                              .tenant = true,
                              .roles = {"owner", "admin"},
                              .scopes = {"events:read"}};
  using Route = std::pair<const char*, http::Handler>;
  for (auto [path, handler] :
       {Route{"/api/events", list_events}, Route{"/api/events/types", list_types},
        Route{"/api/events/{id}", get_event}}) {
    reg.route({.method = Method::kGet,
               .path = path,
               .handler = handler,
               .policies = http::Policies(read)});
  }
}

}  // namespace hsea::jobs
