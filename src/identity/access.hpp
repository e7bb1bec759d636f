#pragma once
// Route policy (vocabulary any module may use; identity's middleware enforces it): who may
// call a route. Declaration only, so that declaring a route never depends on identity's code.
#include <string>
#include <vector>

namespace hsea::identity {

struct Access {
  bool authenticated = false;  // a user session, JWT or API key
  // Not required, but read when sent: the handler serves signed-in and anonymous callers
  // differently (accepting an invitation). Sent credentials that fail are refused (401).
  bool credentials_if_sent = false;
  bool tenant = false;              // a resolved tenant context
  std::vector<std::string> roles;   // any of these tenant roles (users)
  std::vector<std::string> scopes;  // API-key scopes (keys); none: API keys are refused
  bool staff = false;               // platform staff only (the operator API, /api/admin/...)
};

}  // namespace hsea::identity
