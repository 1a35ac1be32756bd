# smpi-toolchain.cmake - build dtrain against SimGrid SMPI (a simulated MPI
# cluster; Debian package libsimgrid-dev) instead of Open MPI.
#
#   cmake -S . -B build-smpi -DCMAKE_TOOLCHAIN_FILE=cmake/smpi-toolchain.cmake
#   (or -DDTRAIN_SMPI=ON, which includes this file through cmake/smpi.cmake)
#
# smpicc is the C compiler, so MPI is "found" as the compiler itself (FindMPI
# sees a working wrapper that needs no extra flags) and every object, the
# static module libraries included, is compiled against SMPI's <mpi.h>.
# smpicc normally links a shared object with a renamed main() that only
# smpirun can start; SMPI_PRETEND_CC=1 makes it behave as a plain compiler,
# which CMake's compiler checks need. It is set for the configure step only
# (try_compile inherits CMake's environment, the real build does not).
# The result, build-smpi/dtrain, runs only under smpirun (see launch/scaling).

find_program(DTRAIN_SMPICC NAMES smpicc
             DOC "SimGrid's MPI compiler wrapper (apt-get install libsimgrid-dev)")
if(NOT DTRAIN_SMPICC)
  message(FATAL_ERROR "smpicc not found: install SimGrid (apt-get install libsimgrid-dev)")
endif()
set(CMAKE_C_COMPILER "${DTRAIN_SMPICC}")
set(ENV{SMPI_PRETEND_CC} 1)

set(DTRAIN_SMPI ON CACHE BOOL "Build against SimGrid SMPI" FORCE)
# Unit tests and benchmarks would become SMPI programs that cannot run on
# their own; the SMPI build is only the dtrain binary.
set(DTRAIN_TESTS OFF CACHE BOOL "Build the tests")
