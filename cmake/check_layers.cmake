# Refuses a module source that includes another module it does not declare (a build error, not
# a review comment). Run per module by hsea_module() in CMakeLists.txt:
#   cmake -DMODULE=identity -DDIR=<src>/identity -DALLOWED="core;http;..." -P check_layers.cmake
# A module may always include its own headers and any module's policy vocabulary
# (<module>/access.hpp, <module>/policies.hpp: declarations only). Tests are not checked.
file(GLOB sources ${DIR}/*.cpp ${DIR}/*.hpp)
set(bad "")
foreach(source IN LISTS sources)
  if(source MATCHES "_(test|pgtest)\\.cpp$")
    continue()
  endif()
  file(STRINGS ${source} includes REGEX "^#include \"[a-z_]+/[a-z_]+\\.hpp\"")
  foreach(line IN LISTS includes)
    string(REGEX REPLACE "^#include \"([a-z_]+)/([a-z_]+)\\.hpp\".*" "\\1;\\2" parts "${line}")
    list(GET parts 0 used)
    list(GET parts 1 header)
    if(used STREQUAL MODULE OR header STREQUAL "access" OR header STREQUAL "policies")
      continue()
    endif()
    list(FIND ALLOWED ${used} found)
    if(found EQUAL -1)
      string(APPEND bad "\n  ${source}: ${line} (module ${MODULE} does not depend on ${used})")
    endif()
  endforeach()
endforeach()
if(bad)
  message(FATAL_ERROR "layering: a module includes a module it does not declare:${bad}\n"
                      "Declare the dependency in CMakeLists.txt (hsea_module) if it is right.")
endif()
