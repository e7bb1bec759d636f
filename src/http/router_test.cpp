#include "http/router.hpp"

#include <gtest/gtest.h>

namespace hsea::http {
namespace {

boost::asio::awaitable<Response> ok(RequestContext&) { co_return Response::no_content(); }

Router make_router() {
  Router r;
  r.add({.method = Method::kGet, .path = "/health", .handler = ok});
  r.add({.method = Method::kGet, .path = "/api/members", .handler = ok});
  r.add({.method = Method::kPost, .path = "/api/members", .handler = ok});
  r.add({.method = Method::kPatch, .path = "/api/members/{user_id}", .handler = ok});
  r.add({.method = Method::kDelete, .path = "/api/members/{user_id}", .handler = ok});
  r.add({.method = Method::kPost, .path = "/api/api-keys/{id}/rotate", .handler = ok});
  return r;
}

TEST(Router, MatchesLiteralAndParameterSegments) {
  Router r = make_router();
  auto m = r.match(Method::kPatch, "/api/members/42");
  ASSERT_EQ(m.kind, Match::Kind::kFound);
  EXPECT_EQ(m.route->path, "/api/members/{user_id}");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].name, "user_id");
  EXPECT_EQ(m.params[0].value, "42");

  auto rotate = r.match(Method::kPost, "/api/api-keys/k1/rotate");
  ASSERT_EQ(rotate.kind, Match::Kind::kFound);
  EXPECT_EQ(rotate.params[0].value, "k1");
}

TEST(Router, ApiRoutesAreAlsoServedUnderV1) {
  Router r = make_router();
  auto plain = r.match(Method::kGet, "/api/members");
  auto versioned = r.match(Method::kGet, "/api/v1/members");
  ASSERT_EQ(versioned.kind, Match::Kind::kFound);
  EXPECT_EQ(plain.route, versioned.route);
  EXPECT_EQ(r.match(Method::kDelete, "/api/v1/members/7").params[0].value, "7");
  // Non-API routes get no alias.
  EXPECT_EQ(r.match(Method::kGet, "/api/v1/health").kind, Match::Kind::kNotFound);
}

TEST(Router, UnknownPathAndWrongMethod) {
  Router r = make_router();
  EXPECT_EQ(r.match(Method::kGet, "/nope").kind, Match::Kind::kNotFound);
  EXPECT_EQ(r.match(Method::kGet, "/api/members/1/extra").kind, Match::Kind::kNotFound);
  auto m = r.match(Method::kPut, "/api/members/1");
  EXPECT_EQ(m.kind, Match::Kind::kMethodNotAllowed);
  EXPECT_EQ(m.allow, "PATCH, DELETE");
  auto get_only = r.match(Method::kPost, "/health");
  EXPECT_EQ(get_only.allow, "GET, HEAD");
}

TEST(Router, HeadFallsBackToGet) {
  Router r = make_router();
  EXPECT_EQ(r.match(Method::kHead, "/health").kind, Match::Kind::kFound);
}

TEST(Router, TrailingAndDoubleSlashesAreTolerated) {
  Router r = make_router();
  EXPECT_EQ(r.match(Method::kGet, "/api/members/").kind, Match::Kind::kFound);
}

TEST(Router, EncodedSlashStaysInsideItsSegment) {
  Router r = make_router();
  // The path as received: split first, then each segment decoded.
  EXPECT_EQ(r.match(Method::kGet, "/api%2Fmembers").kind, Match::Kind::kNotFound);
  EXPECT_EQ(r.match(Method::kGet, "/api/members%2F").kind, Match::Kind::kNotFound);
  auto slash = r.match(Method::kPatch, "/api/members/%2F");
  ASSERT_EQ(slash.kind, Match::Kind::kFound);
  EXPECT_EQ(slash.params[0].value, "/");
  EXPECT_EQ(r.match(Method::kGet, "/api/members/%2F").kind, Match::Kind::kMethodNotAllowed);
  auto decoded = r.match(Method::kPost, "/api/api-keys/a%20b%2Fc/rotate");
  ASSERT_EQ(decoded.kind, Match::Kind::kFound);
  EXPECT_EQ(decoded.params[0].value, "a b/c");
  EXPECT_EQ(r.match(Method::kGet, "/api/%6Dembers").kind, Match::Kind::kFound);
  // A malformed escape matches no literal and stays as sent in a parameter.
  EXPECT_EQ(r.match(Method::kGet, "/api/members%zz").kind, Match::Kind::kNotFound);
  EXPECT_EQ(r.match(Method::kPatch, "/api/members/%zz").params[0].value, "%zz");
}

TEST(Router, AParameterThatIsNotTextNamesNothing) {
  Router r = make_router();
  // libpq sends a parameter up to its first NUL: "pro%00x" would name "pro".
  EXPECT_EQ(r.match(Method::kPatch, "/api/members/pro%00x").kind, Match::Kind::kNotFound);
  EXPECT_EQ(r.match(Method::kPatch, "/api/members/%00").kind, Match::Kind::kNotFound);
  // Not UTF-8: the database refuses it as text.
  EXPECT_EQ(r.match(Method::kPatch, "/api/members/%C3%28").kind, Match::Kind::kNotFound);
  EXPECT_EQ(r.match(Method::kPost, "/api/api-keys/%FF/rotate").kind, Match::Kind::kNotFound);
  auto accented = r.match(Method::kPatch, "/api/members/caf%C3%A9");
  ASSERT_EQ(accented.kind, Match::Kind::kFound);
  EXPECT_EQ(accented.params[0].value, "caf\xC3\xA9");
}

TEST(Router, RejectsDuplicatesAndBadDeclarations) {
  Router r = make_router();
  EXPECT_THROW(r.add({.method = Method::kGet, .path = "/health", .handler = ok}), std::logic_error);
  EXPECT_THROW(r.add({.method = Method::kGet, .path = "/api/members/{other}", .handler = ok}),
               std::logic_error);
  EXPECT_THROW(r.add({.method = Method::kGet, .path = "relative", .handler = ok}),
               std::logic_error);
  EXPECT_THROW(r.add({.method = Method::kGet, .path = "/x", .handler = nullptr}), std::logic_error);
}

TEST(Router, RouteIdsIndexTheRouteList) {
  Router r = make_router();
  for (std::size_t i = 0; i < r.routes().size(); ++i) EXPECT_EQ(r.routes()[i]->id, i);
}

}  // namespace
}  // namespace hsea::http
