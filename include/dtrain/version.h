/* version.h - what this dtrain binary is: the facts `dtrain --version`
 * prints and summary.json records, so a result can be traced to its build.
 *
 * Both are fixed when the binary is built: the version is the project
 * VERSION of CMakeLists.txt; the commit is `git describe --always --dirty`
 * of the source tree, taken again at every build (cmake/git_commit.cmake),
 * or "unknown" when the source is not a git checkout (a release tarball).
 * The run-time facts (OpenBLAS core, MPI library) belong to runtime and
 * comm. */
#ifndef DTRAIN_VERSION_H
#define DTRAIN_VERSION_H

/* "0.1.0" */
const char *dt_version(void);
/* e.g. "b05e5d8", "b05e5d8-dirty", "v0.1.0-3-gb05e5d8", or "unknown" */
const char *dt_git_commit(void);

#endif
