#!/usr/bin/env bash
# smpi_build.sh SOURCE_DIR BUILD_DIR: configure and build dtrain against
# SimGrid SMPI (the smpi_build fixture). Installs libsimgrid-dev when missing
# and running as root; skips (77) when SimGrid cannot be had. The binary of
# an earlier build is removed first and the build's own status decides, so a
# build error fails the test instead of leaving a stale dtrain to pass.
. "$(dirname "$0")/../lib.sh"
src=$1 build=$2
if ! command -v smpicc >/dev/null || ! command -v smpirun >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
        echo "installing libsimgrid-dev"
        export DEBIAN_FRONTEND=noninteractive
        inst() { timeout 600 apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 libsimgrid-dev; }
        inst >/dev/null || { timeout 300 apt-get update -q >/dev/null; inst >/dev/null; } || die "apt-get install libsimgrid-dev"
    else
        skip "SimGrid (libsimgrid-dev) is not installed"
    fi
fi
rm -f "$build/dtrain"
[ ! -e "$build/dtrain" ] || die "cannot remove the old $build/dtrain"
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_TOOLCHAIN_FILE="$src/cmake/smpi-toolchain.cmake" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log"; die "cmake configure failed"; }
cmake --build "$build" -j "$(nproc)" --target dtrain >"$build.build.log" 2>&1 \
    || { grep -E -B2 -A3 'error|Error' "$build.build.log" | head -n 60; die "the SMPI build failed (log: $build.build.log)"; }
[ -x "$build/dtrain" ] || die "the build succeeded but made no $build/dtrain"
echo PASS
