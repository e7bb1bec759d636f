// The web UI's static files through the real server (src/web/): exact files with their content
// type and caching, index.html for the app's pages, the API's namespaces untouched, and no way
// out of HSEA_WEB_DIR.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "testkit/testkit.hpp"

namespace hsea {
namespace {

namespace fs = std::filesystem;
using testkit::http;
using testkit::TestDatabase;
using testkit::TestServer;

const std::string kIndex = "<!doctype html><title>app</title><script src=/assets/app-3f9a.js>";
const std::string kScript = "console.log('app');";
const std::string kSecret = "outside-the-web-dir";

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// A built web UI in a temporary directory, with a file beside it (outside), a dotfile and a
// symbolic link to that file inside.
class Web : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    root_ = new fs::path(fs::temp_directory_path() / ("hsea-web-test-" + std::to_string(getpid())));
    fs::path dir = *root_ / "dist";
    write(dir / "index.html", kIndex);
    write(dir / "assets" / "app-3f9a.js", kScript);
    write(dir / "assets" / "app-77c1.css", "body{}");
    write(dir / "assets" / "font-1.woff2", "wOF2");
    write(dir / "logo.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>");
    write(dir / "favicon.ico", "ico");
    write(dir / "data.bin", "bin");
    write(dir / ".build-stamp", kSecret);
    write(*root_ / "outside.txt", kSecret);
    fs::create_symlink(*root_ / "outside.txt", dir / "linked.txt");
    db_ = new TestDatabase();
    server_ = new TestServer(*db_, {{"HSEA_WEB_DIR", dir.string()}});
  }
  static void TearDownTestSuite() {
    delete server_;
    delete db_;
    fs::remove_all(*root_);
    delete root_;
  }
  static std::string url(const std::string& path) { return server_->url(path); }
  static void expect_problem_404(const std::string& path) {
    auto r = http("GET", url(path));
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.header("content-type"), "application/problem+json") << path;
    EXPECT_EQ(str(testkit::json_of(r), "code"), "not_found") << path;
  }
  static std::string str(const boost::json::object& o, std::string_view key) {
    return testkit::str(o, key);
  }
  static fs::path* root_;
  static TestDatabase* db_;
  static TestServer* server_;
};
fs::path* Web::root_ = nullptr;
TestDatabase* Web::db_ = nullptr;
TestServer* Web::server_ = nullptr;

TEST_F(Web, FilesHaveTheirContentTypeAndHashedAssetsAreCachedForever) {
  auto js = http("GET", url("/assets/app-3f9a.js"));
  EXPECT_EQ(js.status, 200);
  EXPECT_EQ(js.body, kScript);
  EXPECT_EQ(js.header("content-type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(js.header("cache-control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(http("GET", url("/assets/app-77c1.css")).header("content-type"),
            "text/css; charset=utf-8");
  EXPECT_EQ(http("GET", url("/assets/font-1.woff2")).header("content-type"), "font/woff2");
  EXPECT_EQ(http("GET", url("/data.bin")).header("content-type"), "application/octet-stream");

  // Outside assets/ a name is not content-addressed: revalidate.
  auto svg = http("GET", url("/logo.svg"));
  EXPECT_EQ(svg.status, 200);
  EXPECT_EQ(svg.header("content-type"), "image/svg+xml");
  EXPECT_EQ(svg.header("cache-control"), "no-cache");
  EXPECT_EQ(http("GET", url("/favicon.ico")).header("content-type"), "image/x-icon");
  auto index = http("GET", url("/index.html"));
  EXPECT_EQ(index.header("content-type"), "text/html; charset=utf-8");
  EXPECT_EQ(index.header("cache-control"), "no-cache");
}

TEST_F(Web, PagesGetIndexHtmlWithTheServersSecurityHeadersAndAStrictCsp) {
  for (std::string path :
       {"/", "/login", "/signup", "/verify-email?token=abc", "/forgot-password",
        "/reset-password?token=x", "/accept-invitation?token=y", "/confirm-email?token=z",
        "/account", "/account/api-keys", "/account/members"}) {
    auto r = http("GET", url(path));
    EXPECT_EQ(r.status, 200) << path;
    EXPECT_EQ(r.body, kIndex) << path;
    EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8") << path;
    EXPECT_EQ(r.header("cache-control"), "no-cache") << path;
    EXPECT_EQ(r.header("x-frame-options"), "DENY") << path;
    EXPECT_EQ(r.header("x-content-type-options"), "nosniff") << path;
    EXPECT_EQ(r.header("x-request-id").size(), 36u) << path;
    std::string csp = r.header("content-security-policy");
    EXPECT_NE(csp.find("script-src 'self'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
    EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
    EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  }
  // HEAD: the GET's headers and length, no body.
  auto head = http("HEAD", url("/login"));
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.header("content-length"), std::to_string(kIndex.size()));
  EXPECT_TRUE(head.body.empty());
  // The API keeps its own policy: nothing to load.
  EXPECT_EQ(http("GET", url("/health/live")).header("content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'");
}

TEST_F(Web, AnUnknownPageIs404WithTheAppSoItCanSaySo) {
  for (std::string path : {"/nope", "/login/extra", "/accounts"}) {
    auto r = http("GET", url(path));
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.body, kIndex) << path;
    EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8") << path;
  }
}

TEST_F(Web, TheApisNamespacesAndMissingFilesKeepTheProblem404) {
  for (std::string path :
       {"/api/unknown", "/api", "/api/v1/nope", "/api/login", "/health/x", "/healthz", "/metrics/x",
        "/status/x", "/.well-known/nope", "/assets/missing-1.js", "/missing.css", "/.build-stamp",
        "/linked.txt"}) {
    expect_problem_404(path);
  }
  // Routes win, whatever the method: 405 stays 405; other methods of pages are not pages.
  EXPECT_EQ(http("DELETE", url("/health")).status, 405);
  auto post = http("POST", url("/login"), "{}", {"Content-Type: application/json"});
  EXPECT_EQ(post.status, 404);
  EXPECT_EQ(post.header("content-type"), "application/problem+json");
  EXPECT_EQ(http("GET", url("/health/live")).status, 200);
  EXPECT_EQ(http("GET", url("/.well-known/jwks.json")).status, 200);
}

TEST_F(Web, PathTraversalIsRefused) {
  for (std::string target :
       {"/../outside.txt", "/assets/../../outside.txt", "/assets/%2e%2e/%2e%2e/outside.txt",
        "/assets/..%2f..%2foutside.txt", "/%2e%2e/outside.txt", "/./index.html",
        "/assets/..\\..\\outside.txt", "/assets/%5c..%5coutside.txt", "/login%00.js"}) {
    std::string reply = testkit::raw_exchange(
        server_->port(), "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(reply.starts_with("HTTP/1.1 400") || reply.starts_with("HTTP/1.1 404"))
        << target << "\n"
        << reply;
    EXPECT_NE(reply.find("application/problem+json"), std::string::npos) << target;
    EXPECT_EQ(reply.find(kSecret), std::string::npos) << target;
  }
  std::string dotdot = testkit::raw_exchange(
      server_->port(),
      "GET /assets/%2e%2e/index.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_TRUE(dotdot.starts_with("HTTP/1.1 400")) << dotdot;
}

TEST(WebMissing, WithoutABuiltUiThePagesAre404ProblemsAndTheApiWorks) {
  TestDatabase db;
  TestServer server(db, {{"HSEA_WEB_DIR", "/nonexistent/hsea-web"}});
  auto r = http("GET", server.url("/login"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
  EXPECT_EQ(http("GET", server.url("/health/live")).status, 200);
}

}  // namespace
}  // namespace hsea
