#!/usr/bin/env bash
# setup.sh - set up dtrain on a fresh Debian 12 machine, then train or test.
#
#   launch/setup.sh train   install, build, train the default model on 2 ranks
#   launch/setup.sh test    install, build, run the whole test suite, then
#                           again built with AddressSanitizer + UBSan, then
#                           a short run of every libFuzzer target
#
# Installs the Debian packages that are missing (as root, or through sudo),
# configures and builds with CMake into build/ (build-asan/ for the
# sanitizer run). NP=4 launch/setup.sh train uses 4 ranks.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libopenmpi-dev openmpi-bin libopenblas-dev
          libyaml-dev check zlib1g-dev dataset-fashion-mnist)
# what the tests use beyond that: a local Slurm cluster, the SimGrid
# simulator, gnuplot for the scaling plots, PyTorch for the cross-checks
# against it (tests/torch/; Debian's Python, /usr/bin/python3)
test_packages=(slurmctld slurmd slurm-client munge libsimgrid-dev gnuplot-nox clang
               libclang-rt-14-dev python3 procps python3-torch python3-numpy)

install_packages() { # install_packages PACKAGE...
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "setup: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -q
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build() { # build DIR [cmake options]
    local dir=$1
    shift
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@"
    cmake --build "$dir" -j "$(nproc)"
}

# Open MPI refuses root unless told; CI and containers run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

case "${1:-}" in
train)
    install_packages "${packages[@]}"
    build build
    mpirun --oversubscribe -np "${NP:-2}" build/dtrain configs/fashion_mnist_mlp.yaml
    ;;
test)
    install_packages "${packages[@]}" "${test_packages[@]}"
    # warnings are bugs: the test builds turn them into errors
    build build -DDTRAIN_WERROR=ON
    (cd build && ctest --output-on-failure -j 2 --timeout 900)
    build build-asan -DDTRAIN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDTRAIN_WERROR=ON
    (cd build-asan && ctest --output-on-failure -j 2 --timeout 1500)
    tests/fuzz/run.sh 20   # every fuzz target for 20 s (longer: tests/fuzz/run.sh 3600)
    ;;
*)
    echo "usage: launch/setup.sh train|test" >&2
    exit 2
    ;;
esac
