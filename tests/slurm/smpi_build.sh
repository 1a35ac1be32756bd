#!/usr/bin/env bash
# smpi_build.sh SOURCE_DIR BUILD_DIR: configure and build dtrain against
# SimGrid SMPI (the smpi_build fixture). Installs libsimgrid-dev when missing
# and running as root; skips (77) when SimGrid cannot be had.
src=$1 build=$2
if ! command -v smpicc >/dev/null || ! command -v smpirun >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing libsimgrid-dev"
        export DEBIAN_FRONTEND=noninteractive
        inst() { timeout 600 apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 libsimgrid-dev; }
        inst >/dev/null || { timeout 300 apt-get update -q >/dev/null; inst >/dev/null; } || { echo "FAIL: apt-get install libsimgrid-dev"; exit 1; }
    else
        echo "SKIP: SimGrid (libsimgrid-dev) is not installed"; exit 77
    fi
fi
set -e
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$src/cmake/smpi-toolchain.cmake" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" --target dtrain 2>&1 | grep -E 'error|Built target dtrain' || true
test -s "$build/dtrain" || { echo "FAIL: no $build/dtrain"; exit 1; }
echo PASS
