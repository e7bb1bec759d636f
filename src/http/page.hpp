#pragma once
// Cursor pagination, the one way every list reads it: `limit` (1-200, default 50) and
// `starting_after` (the id of the last item of the previous page). A list query asks for
// limit + 1 rows; the extra row only says whether there is more.
#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>

#include "http/context.hpp"

namespace hsea::http {

struct Page {
  int limit = 50;
  std::optional<std::string> starting_after;  // a UUID, lower-case as received
  int fetch() const { return limit + 1; }     // the LIMIT to send
};

// 422 problems naming `limit` or `starting_after` when they are malformed. A list whose ids
// are not UUIDs (plans) passes its own check of a cursor.
Page page_of(const RequestContext& ctx, bool (*valid_cursor)(std::string_view) = nullptr);

// {"data": the first `page.limit` items, "has_more": whether the query found more}.
boost::json::value page_json(boost::json::array items, const Page& page);

}  // namespace hsea::http
