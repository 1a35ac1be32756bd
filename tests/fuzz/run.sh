#!/bin/sh
# run.sh - build and run the libFuzzer targets of tests/fuzz (README.md there).
#
#     tests/fuzz/run.sh [SECONDS_PER_TARGET]      (default 20)
#
# Configures a clang build in build-fuzz/ when there is none (override with
# DTRAIN_FUZZ_BUILD=DIR), builds fuzz_config, fuzz_idx, fuzz_checkpoint and
# fuzz_safetensors, replays every file of tests/fuzz/regressions/<target>/, then fuzzes each
# target for SECONDS_PER_TARGET on a copy of tests/fuzz/corpus/<target>/ (the
# committed corpus is never written). FUZZ_TARGETS="idx config" runs a subset.
# Exit status 0 when nothing was found; 1 on any crash, leak, timeout,
# sanitizer report or broken property; the inputs that failed are kept in
# <build>/fuzz-artifacts/<target>/, the logs in <build>/fuzz-logs/. Prints
# per target the number of inputs executed.
set -eu

secs=${1:-20}
case $secs in '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac
src=$(cd "$(dirname "$0")/../.." && pwd)
fz=$src/tests/fuzz
build=${DTRAIN_FUZZ_BUILD:-$src/build-fuzz}
targets=${FUZZ_TARGETS:-config idx checkpoint safetensors}

if ! grep -q '^DTRAIN_FUZZ:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
    command -v clang >/dev/null 2>&1 || {
        echo "run.sh: clang not found (apt-get install -y clang libclang-rt-14-dev)" >&2
        exit 2
    }
    cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DDTRAIN_FUZZ=ON -DDTRAIN_TESTS=OFF -DCMAKE_PROJECT_INCLUDE="$fz/fuzz.cmake" >/dev/null
fi
jobs=$(nproc 2>/dev/null || echo 2)
cmake --build "$build" -j"$jobs" --target fuzz_config fuzz_idx fuzz_checkpoint fuzz_safetensors \
    >/dev/null

work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=0
summary=""
for t in $targets; do
    bin=$build/fuzz/fuzz_$t
    case $t in
    config) opts="-max_len=4096 -dict=$fz/yaml.dict" ;;
    idx) opts="-max_len=8192" ;;
    checkpoint) opts="-max_len=4096" ;;
    safetensors) opts="-max_len=4096 -dict=$fz/safetensors.dict" ;;
    *) echo "run.sh: unknown target $t" >&2; exit 2 ;;
    esac
    opts="$opts -rss_limit_mb=2048 -timeout=20"
    mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
    status=ok
    echo "run.sh: fuzz_$t for ${secs}s ..." >&2

    # 1. the regressions: every input that once failed must pass
    if [ -d "$fz/regressions/fuzz_$t" ] && [ -n "$(ls -A "$fz/regressions/fuzz_$t")" ]; then
        # shellcheck disable=SC2086
        if ! "$bin" $opts -artifact_prefix="$work/$t/artifacts/" \
            "$fz"/regressions/fuzz_$t/* >"$work/$t/replay.log" 2>&1; then
            echo "== fuzz_$t: a regression input fails again:" >&2
            tail -n 40 "$work/$t/replay.log" >&2
            status=REGRESSION
        fi
    fi

    # 2. fuzzing on a copy of the corpus
    cp "$fz/corpus/fuzz_$t"/* "$work/$t/corpus/"
    # shellcheck disable=SC2086
    if ! "$bin" $opts -max_total_time="$secs" -print_final_stats=1 \
        -artifact_prefix="$work/$t/artifacts/" "$work/$t/corpus" >"$work/$t/fuzz.log" 2>&1; then
        echo "== fuzz_$t: FAILED; the end of its log:" >&2
        tail -n 60 "$work/$t/fuzz.log" >&2
        status=FAILED
    fi
    mkdir -p "$build/fuzz-logs"
    cp "$work/$t/fuzz.log" "$build/fuzz-logs/fuzz_$t.log"
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t/fuzz.log" | tail -n 1)
    if [ -n "$(ls -A "$work/$t/artifacts")" ]; then
        mkdir -p "$build/fuzz-artifacts/fuzz_$t"
        cp "$work/$t/artifacts"/* "$build/fuzz-artifacts/fuzz_$t/"
        echo "== fuzz_$t: failing inputs saved in $build/fuzz-artifacts/fuzz_$t/" >&2
    fi
    [ "$status" = ok ] || failed=1
    line=$(printf 'fuzz_%-11s %-10s %12s executions in %ss' "$t" "$status" "${execs:-?}" "$secs")
    summary="$summary$line
"
done
echo "---"
printf '%s' "$summary"
[ "$failed" = 0 ] && echo "fuzzing: nothing found" || echo "fuzzing: FAILED"
exit "$failed"
