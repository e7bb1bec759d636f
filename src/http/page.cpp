#include "http/page.hpp"

#include <boost/json/object.hpp>

#include <charconv>

#include "core/error.hpp"
#include "core/ids.hpp"

namespace hsea::http {

Page page_of(const RequestContext& ctx, bool (*valid_cursor)(std::string_view)) {
  Page page;
  std::string value;
  if (ctx.request.query_param("limit", value) && !value.empty()) {
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), page.limit);
    if (ec != std::errc{} || end != value.data() + value.size() || page.limit < 1 ||
        page.limit > 200) {
      throw core::ApiError(core::ErrorCode::kValidationFailed, "Check the query parameters.",
                           {{"limit", "must be an integer from 1 to 200"}});
    }
  }
  if (ctx.request.query_param("starting_after", value) && !value.empty()) {
    if (!(valid_cursor != nullptr ? valid_cursor(value) : core::is_uuid(value))) {
      throw core::ApiError(core::ErrorCode::kValidationFailed, "Check the query parameters.",
                           {{"starting_after", "must be the id of an item of this list"}});
    }
    page.starting_after = std::move(value);
  }
  return page;
}

boost::json::value page_json(boost::json::array items, const Page& page) {
  bool more = items.size() > static_cast<std::size_t>(page.limit);
  if (more) items.resize(static_cast<std::size_t>(page.limit));
  return boost::json::object{{"data", std::move(items)}, {"has_more", more}};
}

}  // namespace hsea::http
