#pragma once
// Operations: the access log and request metrics (an edge middleware), and the endpoints
// GET /health/live, GET /health, GET /status, GET /metrics.
#include <string>

namespace hsea::runtime {
class Registrar;
}

namespace hsea::ops {

// The ops module's settings section.
struct Settings {
  std::string metrics_token;  // production: the bearer token /metrics and /status require
};

void Register(runtime::Registrar& registrar);

}  // namespace hsea::ops
