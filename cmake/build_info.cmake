# Writes build_info.cpp (from TEMPLATE) with the source tree's git commit, followed by
# "-dirty" when tracked files have uncommitted changes, and the build time. CMakeLists.txt runs it
# on every build; OUT is rewritten only when its stamp (the commit and the template) changes, so an
# unchanged tree recompiles and relinks nothing, and the build time is when the commit last
# changed. The commit is "unknown" when SRC is not the top of a git work tree.
#
#   cmake -DSRC=<source dir> -DTEMPLATE=<build_info.cpp.in> -DOUT=<build_info.cpp> \
#         -P build_info.cmake
foreach(var SRC TEMPLATE OUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "build_info.cmake: -D${var}=... is required")
  endif()
endforeach()

set(commit unknown)
find_program(GIT_EXECUTABLE git)
if(GIT_EXECUTABLE)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel --short=12 HEAD
                  WORKING_DIRECTORY ${SRC} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_QUIET
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  string(REPLACE "\n" ";" out "${out}")
  list(LENGTH out n)
  if(rc EQUAL 0 AND n EQUAL 2)
    list(GET out 0 top)
    list(GET out 1 head)
    file(REAL_PATH "${SRC}" src_real)
    file(REAL_PATH "${top}" top_real)
    # A source tree without .git inside someone else's repository is not that repository's commit.
    if(src_real STREQUAL top_real)
      set(commit ${head})
      # --no-optional-locks: never take index.lock (an editor or another build may hold it).
      execute_process(COMMAND ${GIT_EXECUTABLE} --no-optional-locks status --porcelain
                              --untracked-files=no
                      WORKING_DIRECTORY ${SRC} RESULT_VARIABLE rc OUTPUT_VARIABLE changes
                      ERROR_QUIET)
      if(NOT rc EQUAL 0 OR NOT changes STREQUAL "")
        string(APPEND commit -dirty)
      endif()
    endif()
  endif()
endif()

file(MD5 ${TEMPLATE} template_md5)
set(HSEA_BUILD_STAMP "${commit} ${template_md5}")
if(EXISTS ${OUT})
  file(STRINGS ${OUT} old_stamp REGEX "^// stamp: " LIMIT_COUNT 1)
  if(old_stamp STREQUAL "// stamp: ${HSEA_BUILD_STAMP}")
    return()
  endif()
endif()
set(HSEA_GIT_COMMIT ${commit})
string(TIMESTAMP HSEA_BUILD_TIME "%Y-%m-%dT%H:%M:%SZ" UTC)
configure_file(${TEMPLATE} ${OUT} @ONLY)
