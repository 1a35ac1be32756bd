# smpi.cmake - the DTRAIN_SMPI option. Include it BEFORE project() in the
# top-level CMakeLists.txt (the compiler must be chosen before languages are
# enabled):
#
#   include(cmake/smpi.cmake)        # before project(dtrain ...)
#
#   cmake -S . -B build-smpi -DDTRAIN_SMPI=ON && cmake --build build-smpi
#
# With the option ON it is the same as
# -DCMAKE_TOOLCHAIN_FILE=cmake/smpi-toolchain.cmake: smpicc becomes the C
# compiler, MPI is SMPI, the tests are off. Use a separate build directory:
# CMake cannot switch the compiler of an existing one.
option(DTRAIN_SMPI "Build dtrain against SimGrid SMPI (smpicc) to run on simulated clusters" OFF)
if(DTRAIN_SMPI)
  include("${CMAKE_CURRENT_LIST_DIR}/smpi-toolchain.cmake")
endif()
