#pragma once
// The web UI: the static files `web/` builds (Vite) served from the same origin as the API, for
// GET and HEAD of paths no route matches, outside the API's namespaces (/api, /health*,
// /metrics, /status, /.well-known): exact files, and index.html for the single-page app's
// page paths, so a mailed link (/verify-email?token=...) opens the page.
#include <optional>
#include <string>
#include <string_view>

namespace hsea::runtime {
class Registrar;
}

namespace hsea::web {

// Where this binary's build put the pages (the build tree's web/ directory).
std::string default_dir();

// The web module's settings section.
struct Settings {
  std::string dir = default_dir();  // HSEA_WEB_DIR: the built files
};

// The Content-Type for a file name, by its extension ("application/octet-stream" when unknown).
std::string_view content_type_for(std::string_view file_name);

// What GET `path` (percent-decoded, no query) asks of the web UI:
enum class Kind {
  kNotWeb,      // an API namespace: the router's 404 problem stands
  kRefused,     // a ".." or "." segment, a backslash or a NUL: 400, whatever exists
  kFile,        // a file name (the last segment has an extension): that file or 404 problem
  kPage,        // a page of the app: index.html
  kUnknownPage  // no such page: index.html with status 404 (the app shows "not found")
};
Kind classify(std::string_view path);

void Register(runtime::Registrar& registrar);

}  // namespace hsea::web
