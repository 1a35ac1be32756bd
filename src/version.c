/* version.c - the build facts of version.h. The strings come from a header
 * that the build writes (cmake/git_commit.cmake) and rewrites only when the
 * commit changes, so a rebuild recompiles this file alone, and only then. */
#include "dtrain/version.h"

#include "dtrain_build_facts.h" /* DT_BUILD_VERSION, DT_BUILD_GIT_COMMIT */

const char *dt_version(void) { return DT_BUILD_VERSION; }
const char *dt_git_commit(void) { return DT_BUILD_GIT_COMMIT; }
