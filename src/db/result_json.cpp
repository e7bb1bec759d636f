// db::Result's JSON helpers, apart from pool.cpp so that only their callers and this file need
// Boost.JSON's headers.
#include <boost/json/value.hpp>

#include "db/db.hpp"

namespace hsea::db {

boost::json::value Result::nullable(int row, std::string_view name) const {
  int c = column(name);
  if (is_null(row, c)) return nullptr;
  return boost::json::value(get(row, c));
}

boost::json::value Result::nullable_time(int row, std::string_view name) const {
  if (is_null(row, column(name))) return nullptr;
  return boost::json::value(time(row, name));
}

boost::json::value Result::nullable_int(int row, std::string_view name) const {
  if (is_null(row, column(name))) return nullptr;
  return boost::json::value(get_int(row, name));
}

}  // namespace hsea::db
