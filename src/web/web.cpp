#include "web/web.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/settings.hpp"
#include "http/context.hpp"
#include "http/middleware.hpp"
#include "http/problem.hpp"
#include "runtime/registrar.hpp"

// HSEA_WEB_DIR_DEFAULT: CMake defines it as the build tree's web/ (scripts/build-web's output).

namespace hsea::web {
namespace {

namespace fs = std::filesystem;
using http::RequestContext;
using http::Response;

// The app's pages (web/src/pages.ts lists the same): the server answers them 200, any other
// extension-less path 404, both with index.html so the app can render either.
constexpr std::array<std::string_view, 8> kPages{"/",
                                                 "/login",
                                                 "/signup",
                                                 "/verify-email",
                                                 "/forgot-password",
                                                 "/reset-password",
                                                 "/accept-invitation",
                                                 "/confirm-email"};
constexpr std::string_view kAccountArea = "/account";

// Only the built files: scripts from our origin, no inline script or style element, nothing
// framed. Images may be data: URLs (the MFA enrolment's QR code is an SVG from the API).
constexpr std::string_view kPageCsp =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; manifest-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'";

// Vite names what it emits under assets/ by content hash: a changed file gets a new name.
constexpr std::string_view kImmutable = "public, max-age=31536000, immutable";
// Everything else (index.html above all) names the current assets: revalidate every time.
constexpr std::string_view kRevalidate = "no-cache";

// A relative directory would depend on where the server was started from.
std::optional<std::string> absolute_directory(std::string& value) {
  if (!value.starts_with("/")) return std::string("must be an absolute path");
  return std::nullopt;
}

const core::Section<Settings> kSettings{
    "web",
    {core::string_setting(&Settings::dir, "HSEA_WEB_DIR", "(the build's web/ output)",
                          "directory of the built web UI (scripts/build-web), read once at "
                          "start; missing: no pages are served",
                          absolute_directory)}};

struct File {
  std::string body;
  std::string_view content_type;
  std::string_view cache_control;
};

// The built files, read once at start: requests never touch the disk, and a path can name
// nothing but a file that was in the directory (no traversal, no symbolic links, no dotfiles).
struct Files {
  std::unordered_map<std::string, File> by_path;  // "/assets/index-abc.js"
  const File* index = nullptr;
};
const Files* g_files = nullptr;

bool starts_with_segment(std::string_view path, std::string_view prefix) {
  return path.starts_with(prefix) && (path.size() == prefix.size() || path[prefix.size()] == '/');
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  if (!in && !in.eof()) throw std::runtime_error("cannot read " + path.string());
  return std::move(out).str();
}

void load(const std::string& dir, Files& files) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    log::warn("web UI not found: no pages are served (build it with scripts/build-web)",
              {{"dir", dir}});
    return;
  }
  std::size_t bytes = 0;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const fs::path& path = it->path();
    std::string name = path.filename().string();
    if (name.starts_with(".")) {  // build stamps, editor files: never served
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_symlink() || !it->is_regular_file()) continue;
    std::string relative = "/" + fs::relative(path, dir).generic_string();
    File file{read_all(path), content_type_for(name),
              relative.starts_with("/assets/") ? kImmutable : kRevalidate};
    bytes += file.body.size();
    files.by_path.emplace(std::move(relative), std::move(file));
  }
  if (ec) throw std::runtime_error("HSEA_WEB_DIR " + dir + ": " + ec.message());
  if (auto found = files.by_path.find("/index.html"); found != files.by_path.end()) {
    files.index = &found->second;
  } else {
    log::warn("web UI has no index.html: no pages are served", {{"dir", dir}});
  }
  log::info("web UI loaded", {{"dir", dir}, {"files", files.by_path.size()}, {"bytes", bytes}});
}

Response file_response(int status, const File& file) {
  Response r;
  r.status = status;
  r.body = file.body;
  r.set_header("content-type", std::string(file.content_type));
  r.set_header("cache-control", std::string(file.cache_control));
  r.set_header("content-security-policy", std::string(kPageCsp));
  return r;
}

bool applies(const RequestContext& ctx) {
  return ctx.rejection == nullptr && ctx.match.kind == http::Match::Kind::kNotFound &&
         (ctx.request.method == http::Method::kGet || ctx.request.method == http::Method::kHead);
}

// Answers before routing's 404 when the path is the web UI's; otherwise lets it through.
std::optional<Response> serve(RequestContext& ctx) {
  const std::string& path = ctx.request.path;
  Kind kind = classify(path);
  if (kind == Kind::kNotWeb || g_files == nullptr) return std::nullopt;
  if (kind == Kind::kRefused) {
    return http::problem(core::ErrorCode::kBadRequest, "The path is not acceptable.",
                         ctx.request_id);
  }
  if (kind == Kind::kFile) {
    auto found = g_files->by_path.find(path);
    if (found == g_files->by_path.end()) return std::nullopt;  // a missing asset: 404 problem
    return file_response(200, found->second);
  }
  if (g_files->index == nullptr) return std::nullopt;
  return file_response(kind == Kind::kPage ? 200 : 404, *g_files->index);
}

}  // namespace

std::string default_dir() { return HSEA_WEB_DIR_DEFAULT; }

std::string_view content_type_for(std::string_view file_name) {
  struct Type {
    std::string_view extension;
    std::string_view content_type;
  };
  static constexpr std::array<Type, 20> kTypes{{
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".webmanifest", "application/manifest+json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".gif", "image/gif"},
      {".webp", "image/webp"},
      {".avif", "image/avif"},
      {".ico", "image/x-icon"},
      {".woff", "font/woff"},
      {".woff2", "font/woff2"},
      {".ttf", "font/ttf"},
      {".txt", "text/plain; charset=utf-8"},
      {".wasm", "application/wasm"},
  }};
  auto dot = file_name.rfind('.');
  if (dot == std::string_view::npos) return "application/octet-stream";
  std::string extension(file_name.substr(dot));
  std::ranges::transform(extension, extension.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const Type& t : kTypes) {
    if (t.extension == extension) return t.content_type;
  }
  return "application/octet-stream";
}

Kind classify(std::string_view path) {
  for (std::string_view ns : {"/api", "/metrics", "/status", "/.well-known"}) {
    if (starts_with_segment(path, ns)) return Kind::kNotWeb;
  }
  if (path.starts_with("/health")) return Kind::kNotWeb;
  if (!path.starts_with("/") || path.find('\\') != std::string_view::npos ||
      path.find('\0') != std::string_view::npos) {
    return Kind::kRefused;
  }
  // Segments, as decoded: "%2e%2e" is ".." here too.
  std::string_view last;
  for (std::size_t start = 1; start <= path.size();) {
    std::size_t end = std::min(path.find('/', start), path.size());
    std::string_view segment = path.substr(start, end - start);
    if (segment == ".." || segment == ".") return Kind::kRefused;
    last = segment;
    start = end + 1;
  }
  if (last.find('.') != std::string_view::npos) return Kind::kFile;
  if (std::ranges::find(kPages, path) != kPages.end() || starts_with_segment(path, kAccountArea)) {
    return Kind::kPage;
  }
  return Kind::kUnknownPage;
}

void Register(runtime::Registrar& reg) {
  const Settings& settings = reg.settings(kSettings);
  std::string dir = settings.dir;
  // An edge step, not a route: it answers only what routing found nothing for, so every route
  // (and its 405) wins, and it runs before routing's 404 problem.
  reg.middleware({.name = "web-ui", .stage = http::Stage::kEdge, .before = serve, .when = applies});
  Files& files = reg.process(std::make_unique<Files>());
  g_files = &files;
  reg.on_start([dir, &files](runtime::Application& app, runtime::Runtime*) {
    if (app.role == runtime::Role::kServe) load(dir, files);
  });
}

}  // namespace hsea::web
