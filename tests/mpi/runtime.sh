#!/usr/bin/env bash
# The machine under the trainer: the BLAS kernel dtrain reports and re-execs
# into, and the automatic thread count (runtime.threads: 0).
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 5 "runtime: {threads: 0}"
core() { json_field "$WORK/$1/summary.json" blas_core; }

rc=$(run 1 "$WORK/plain" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/plain.log"; die "exit $rc"; }
[ -n "$(core plain)" ] || die "no blas_core in summary.json"
grep -q "OpenBLAS $(core plain)" "$WORK/plain.log" || die "the log does not name the kernel"
echo "default kernel: $(core plain)"

# A core the user chose is respected, even a slow one.
export OPENBLAS_CORETYPE=Prescott
rc=$(run 1 "$WORK/user" "$WORK/c.yaml")
[ "$rc" -eq 0 ] && [ "$(core user)" = Prescott ] || die "OPENBLAS_CORETYPE=Prescott not respected: $(core user)"

# The re-exec path, forced (this CPU may be one OpenBLAS recognises).
if grep -qw avx2 /proc/cpuinfo; then
    want=Haswell
    grep -qw avx512f /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo && want=SkylakeX
    rc=$(DTRAIN_BLAS_REEXEC=force run 2 "$WORK/forced" "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || { cat "$WORK/forced.log"; die "forced re-exec: exit $rc"; }
    [ "$(core forced)" = "$want" ] || die "re-exec gave $(core forced), expected $want"
    echo "fallback core Prescott re-executed into $want"
fi
unset OPENBLAS_CORETYPE

# Threads: the node's cores divided by the ranks on it.
cores=$(nproc)
for np in 1 2; do
    rc=$(run "$np" "$WORK/t$np" "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || die "np $np: exit $rc"
    want=$((cores / np)); [ "$want" -ge 1 ] || want=1
    got=$(json_field "$WORK/t$np/summary.json" threads)
    [ "$got" = "$want" ] || die "np $np: $got threads, expected $want ($cores cores)"
done
rc=$(run 2 "$WORK/t3" --set runtime.threads=3 "$WORK/c.yaml")
[ "$(json_field "$WORK/t3/summary.json" threads)" = 3 ] || die "runtime.threads: 3 not applied"
echo "PASS"
