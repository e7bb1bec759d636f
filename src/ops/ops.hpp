#pragma once
// Operations endpoints: GET /health/live, GET /health, GET /status, GET /metrics.

namespace hsea::app {
struct App;
}

namespace hsea::ops {

void Register(app::App& app);

}  // namespace hsea::ops
