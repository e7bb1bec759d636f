#pragma once
// Text files compiled into the binary (see hsea_embed_text in CMakeLists.txt).
#include <string_view>

namespace hsea::embedded {
std::string_view common_passwords();  // data/common-passwords.txt
std::string_view openapi_yaml();      // openapi/openapi.yaml
}  // namespace hsea::embedded
