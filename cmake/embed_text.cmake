# Writes a C++ source defining `std::string_view FUNC()` with the contents of IN.
file(READ ${IN} text)
set(body "// Generated from ${IN} by cmake/embed_text.cmake. Do not edit.\n")
string(APPEND body "#include <string_view>\nnamespace ${NAMESPACE} {\n")
string(APPEND body "std::string_view ${FUNC}() {\n  static constexpr std::string_view kText = R\"hsea_text(${text})hsea_text\";\n  return kText;\n}\n}\n")
file(WRITE ${OUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
