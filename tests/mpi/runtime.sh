#!/usr/bin/env bash
# The machine under the trainer: the BLAS kernel dtrain reports, a core the
# user chose, and the automatic thread count (runtime.threads: 0) computed
# here by dtrain's own rule, so that no figure of this machine is built in.
# (The re-exec itself: reexec.sh.)
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 5 "runtime: {threads: 0}"
core() { json_field "$WORK/$1/summary.json" blas_core; }

rc=$(run 1 "$WORK/plain" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/plain.log"; die "exit $rc"; }
[ -n "$(core plain)" ] || die "no blas_core in summary.json"
grep -q "OpenBLAS $(core plain)" "$WORK/plain.log" || die "the log does not name the kernel"
echo "default kernel: $(core plain)"

# A core the user chose is respected, even a slow one; only a forced
# re-exec replaces a generic fallback core, the user's too (reexec.sh).
want=Prescott
best=$(best_blas_core)
[ "${DTRAIN_BLAS_REEXEC:-}" = force ] && [ -n "$best" ] && want=$best
rc=$(OPENBLAS_CORETYPE=Prescott run 1 "$WORK/user" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/user.log"; die "OPENBLAS_CORETYPE=Prescott: exit $rc"; }
[ "$(core user)" = "$want" ] || die "OPENBLAS_CORETYPE=Prescott, DTRAIN_BLAS_REEXEC=${DTRAIN_BLAS_REEXEC:-}: kernel $(core user), expected $want"
# ... and the start-up line points out the faster kernel it leaves unused.
if [ "$want" = Prescott ] && [ -n "$best" ]; then
    grep -q "(OpenBLAS Prescott from OPENBLAS_CORETYPE; this CPU also runs the faster $best)" "$WORK/user.log" \
        || { head -n 2 "$WORK/user.log"; die "OPENBLAS_CORETYPE=Prescott kept: the log does not name the faster $best"; }
else
    ! grep -q "also runs the faster" "$WORK/user.log" || die "kernel $(core user): the log names a faster one"
fi

# Threads (runtime.threads: 0): the node's online cores divided by the ranks
# on it (all ranks run on this node here), at most the CPUs the rank may run
# on (mpirun --bind-to none: the affinity of this shell), at least 1.
online=$(getconf _NPROCESSORS_ONLN)
allowed=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc) # nproc counts the affinity mask
for np in 1 2 3; do
    rc=$(run "$np" "$WORK/t$np" "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || { cat "$WORK/t$np.log"; die "np $np: exit $rc"; }
    want=$((online / np))
    [ "$want" -le "$allowed" ] || want=$allowed
    [ "$want" -ge 1 ] || want=1
    got=$(json_field "$WORK/t$np/summary.json" threads)
    [ "$got" = "$want" ] || die "np $np: $got threads, expected $want ($online online, $allowed allowed)"
    echo "np $np: $got BLAS thread(s) per rank ($online online, $allowed allowed)"
done
rc=$(run 2 "$WORK/fixed3" --set runtime.threads=3 "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/fixed3.log"; die "runtime.threads=3: exit $rc"; }
[ "$(json_field "$WORK/fixed3/summary.json" threads)" = 3 ] || die "runtime.threads: 3 not applied"
echo "PASS"
