#pragma once
#include <string_view>

namespace hsea::core {

struct BuildInfo {
  std::string_view version;
  std::string_view git_commit;
  std::string_view build_time;
};

const BuildInfo& build_info();

}  // namespace hsea::core
