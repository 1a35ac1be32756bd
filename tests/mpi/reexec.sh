#!/usr/bin/env bash
# The BLAS re-exec, forced (DTRAIN_BLAS_REEXEC=force re-execs exactly once,
# also on a CPU that OpenBLAS recognises, so this path is tested everywhere):
# - the ranks keep their name and arguments: /proc/PID/comm is "dtrain",
#   pgrep -x dtrain finds them, argv is what mpirun started;
# - the re-exec really happened: the start-up note says
#   "re-executed with OPENBLAS_CORETYPE=X", the rank's environment holds X,
#   and X is the kernel the run reports;
# - X is the best core this CPU has (derived here from /proc/cpuinfo), or
#   the user's OPENBLAS_CORETYPE when set.
. "$(dirname "$0")/lib.sh"
export DTRAIN_BLAS_REEXEC=force
unset OPENBLAS_CORETYPE
small_config "$WORK/c.yaml" 100000 "checkpoint:"

# The core the re-executed image should get: SkylakeX with AVX-512 (F, BW,
# VL, DQ), Haswell with AVX2 and FMA, else what OpenBLAS detects by itself.
flags=$(grep -m1 '^flags' /proc/cpuinfo)
has() { [[ " $flags " == *" $1 "* ]]; }
if has avx512f && has avx512bw && has avx512vl && has avx512dq; then want=SkylakeX
elif has avx2 && has fma; then want=Haswell
else
    rc=$(DTRAIN_BLAS_REEXEC=0 run 1 "$WORK/detected" --set train.steps=1 "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || { cat "$WORK/detected.log"; die "detection run: exit $rc"; }
    want=$(json_field "$WORK/detected/summary.json" blas_core)
fi

# A long run in the background, looked at while it trains, then stopped.
start_run 2 "$WORK/run" "$WORK/c.yaml"
launcher=$LAUNCHER
wait_for_steps "$WORK/run/metrics.jsonl" 5 120 || { cat "$WORK/run.log"; die "the run did not start"; }
ranks=$(pgrep -P "$launcher" -x dtrain) # this job's ranks, by name
[ "$(echo "$ranks" | wc -w)" -eq 2 ] \
    || { ps -o pid,comm,args --ppid "$launcher"; die "expected 2 ranks named dtrain under mpirun, found: $ranks"; }
expected_argv=$(printf '%s\n' "$DTRAIN" --set "run.out_dir=$WORK/run" "$WORK/c.yaml") # as start_run gives it
for pid in $ranks; do
    [ "$(cat "/proc/$pid/comm")" = dtrain ] || die "rank $pid: comm '$(cat "/proc/$pid/comm")'"
    [ "$(tr '\0' '\n' < "/proc/$pid/cmdline")" = "$expected_argv" ] \
        || die "rank $pid: argv '$(tr '\0' ' ' < "/proc/$pid/cmdline")', expected '$(echo $expected_argv)'"
    env_core=$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^OPENBLAS_CORETYPE=//p')
    [ "$env_core" = "$want" ] || die "rank $pid: OPENBLAS_CORETYPE='$env_core' in its environment, expected $want"
done
pkill -TERM -P "$launcher" -x dtrain
wait "$launcher"
rc=$?
[ "$rc" -eq 5 ] || { cat "$WORK/run.log"; die "stopped run exited $rc, expected 5"; }
[ "$(grep -c "re-executed with OPENBLAS_CORETYPE=$want" "$WORK/run.log")" -ge 1 ] \
    || { cat "$WORK/run.log"; die "no 're-executed with OPENBLAS_CORETYPE=$want' note"; }
grep -q "(OpenBLAS $want)" "$WORK/run.log" || { cat "$WORK/run.log"; die "the run does not report kernel $want"; }
echo "forced re-exec: 2 ranks named dtrain, argv unchanged, OPENBLAS_CORETYPE=$want"

# The user's choice survives the forced re-exec.
rc=$(OPENBLAS_CORETYPE=Prescott run 1 "$WORK/user" --set train.steps=5 "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/user.log"; die "OPENBLAS_CORETYPE=Prescott: exit $rc"; }
grep -q "re-executed with OPENBLAS_CORETYPE=Prescott" "$WORK/user.log" \
    || { cat "$WORK/user.log"; die "no re-exec note with the user's Prescott"; }
[ "$(json_field "$WORK/user/summary.json" blas_core)" = Prescott ] || die "the user's Prescott was not kept"
echo "PASS"
