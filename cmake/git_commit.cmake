# git_commit.cmake - run at every build (cmake -P) to write the header of
# build facts that src/version.c compiles in:
#   cmake -DSOURCE_DIR=... -DOUTPUT=.../dtrain_build_facts.h -DVERSION=0.1.0 -P git_commit.cmake
# The commit is `git describe --always --dirty` when SOURCE_DIR is the top of
# a git checkout (not merely inside someone else's repository), else
# "unknown". The header is rewritten only when its text changes, so an
# unchanged commit costs one git call and no recompilation.
set(commit unknown)
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --show-toplevel
                  WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE top
                  RESULT_VARIABLE top_rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(top_rc EQUAL 0)
    file(REAL_PATH "${top}" top)
    file(REAL_PATH "${SOURCE_DIR}" src)
  endif()
  if(top_rc EQUAL 0 AND top STREQUAL src)
    execute_process(COMMAND ${GIT_EXECUTABLE} describe --always --dirty
                    WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE described
                    RESULT_VARIABLE describe_rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
    if(describe_rc EQUAL 0 AND NOT described STREQUAL "")
      set(commit "${described}")
    endif()
  endif()
endif()

# A tag may contain '"' (git forbids backslashes in ref names).
string(REPLACE "\"" "\\\"" commit "${commit}")
set(text "/* Written by cmake/git_commit.cmake at build time; do not edit. */
#define DT_BUILD_VERSION \"${VERSION}\"
#define DT_BUILD_GIT_COMMIT \"${commit}\"
")
set(old "")
if(EXISTS "${OUTPUT}")
  file(READ "${OUTPUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUTPUT}" "${text}")
endif()
