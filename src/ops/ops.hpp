#pragma once
// Operations: the access log and request metrics (an edge middleware), and the endpoints
// GET /health/live, GET /health, GET /status, GET /metrics.
namespace hsea::runtime {
class Registrar;
}

namespace hsea::ops {

void Register(runtime::Registrar& registrar);

}  // namespace hsea::ops
