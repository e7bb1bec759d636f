#include <gtest/gtest.h>

#include "web/web.hpp"

namespace hsea::web {
namespace {

TEST(WebClassify, ApiNamespacesAreNotTheWebUis) {
  for (auto path : {"/api", "/api/", "/api/x", "/api/v1/members", "/health", "/health/live",
                    "/healthz", "/metrics", "/metrics/x", "/status", "/.well-known/jwks.json"}) {
    EXPECT_EQ(classify(path), Kind::kNotWeb) << path;
  }
  // Only whole segments: /apiary is a page path like any other.
  EXPECT_EQ(classify("/apiary"), Kind::kUnknownPage);
  EXPECT_EQ(classify("/statuses"), Kind::kUnknownPage);
}

TEST(WebClassify, PagesFilesAndUnknownPages) {
  for (auto path :
       {"/", "/login", "/signup", "/verify-email", "/forgot-password", "/reset-password",
        "/accept-invitation", "/confirm-email", "/account", "/account/", "/account/api-keys"}) {
    EXPECT_EQ(classify(path), Kind::kPage) << path;
  }
  for (auto path : {"/index.html", "/assets/index-abc.js", "/favicon.ico", "/a/b.c/d.txt"}) {
    EXPECT_EQ(classify(path), Kind::kFile) << path;
  }
  for (auto path : {"/nope", "/login/", "/accounts", "/a.b/c"}) {
    EXPECT_EQ(classify(path), Kind::kUnknownPage) << path;
  }
}

TEST(WebClassify, DotSegmentsBackslashesAndNulAreRefused) {
  using namespace std::string_view_literals;
  for (std::string_view path :
       {"/.."sv, "/../etc/passwd"sv, "/assets/../index.html"sv, "/./index.html"sv, "/assets/."sv,
        "/a\\b"sv, "/login\0.js"sv, "relative"sv, ""sv}) {
    EXPECT_EQ(classify(path), Kind::kRefused) << path;
  }
  EXPECT_EQ(classify("/..."), Kind::kFile);  // a name, not a parent
}

TEST(WebContentType, ByExtensionCaseInsensitively) {
  EXPECT_EQ(content_type_for("index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(content_type_for("APP.JS"), "text/javascript; charset=utf-8");
  EXPECT_EQ(content_type_for("a.css"), "text/css; charset=utf-8");
  EXPECT_EQ(content_type_for("qr.svg"), "image/svg+xml");
  EXPECT_EQ(content_type_for("f.woff2"), "font/woff2");
  EXPECT_EQ(content_type_for("x.tar.gz"), "application/octet-stream");
  EXPECT_EQ(content_type_for("Makefile"), "application/octet-stream");
}

}  // namespace
}  // namespace hsea::web
