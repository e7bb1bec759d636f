// The start-up check that every named statement has its own name.
#include <fmt/format.h>

#include <map>
#include <stdexcept>
#include <string_view>

#include "db/db.hpp"

// Defined by the linker for the section HSEA_QUERY places statements in.
extern "C" {
extern const hsea::db::Query __start_hsea_queries[] __attribute__((weak));
extern const hsea::db::Query __stop_hsea_queries[] __attribute__((weak));
}

namespace hsea::db {

void check_query_names(std::span<const Query> queries) {
  std::map<std::string_view, const Query*> seen;
  for (const Query& q : queries) {
    auto [it, fresh] = seen.emplace(q.name, &q);
    if (!fresh) {
      throw std::logic_error(
          fmt::format("two SQL statements are named \"{}\": \"{}\" and \"{}\"; rename one of them",
                      q.name, it->second->sql, q.sql));
    }
  }
}

void check_query_names() {
  if (__start_hsea_queries == nullptr) return;
  check_query_names(std::span<const Query>(__start_hsea_queries, __stop_hsea_queries));
}

}  // namespace hsea::db
