#pragma once
// Route policies (vocabulary any module may use; security's middleware enforces them).
// Declaration only.
#include <string>

namespace hsea::security {

// The route's JSON body must match this schema (a schema under components.schemas of the
// embedded openapi.yaml): 415 / 400 / 422 with errors[] before the handler runs.
struct Body {
  std::string schema;
};

// HSEA-046 data-access logging: after a successful request, record who read what (the path and
// query as metadata). Reading the audit log itself is not recorded there: it would change the
// log under the reader's cursor; the access log line keeps those reads.
struct AccessEvent {
  std::string action;  // e.g. "member.read"
};

}  // namespace hsea::security
