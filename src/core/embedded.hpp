#pragma once
// Text files compiled into the binary (see hsea_embed_text and hsea_embed_dir in CMakeLists.txt).
#include <span>
#include <string_view>

namespace hsea::embedded {
struct File {
  std::string_view name;  // the file name, without its directory
  std::string_view text;
};
std::string_view common_passwords();     // data/common-passwords.txt
std::string_view openapi_yaml();         // openapi/openapi.yaml
std::span<const File> mail_templates();  // templates/mail/*.mustache
}  // namespace hsea::embedded
