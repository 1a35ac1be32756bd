#!/usr/bin/env bash
# The BLAS re-exec, forced: DTRAIN_BLAS_REEXEC=force re-execs exactly once,
# also on a CPU that OpenBLAS recognises, so this path is tested everywhere.
# - the ranks keep their name and arguments: /proc/PID/comm is "dtrain",
#   pgrep -x dtrain finds them, argv is what mpirun started;
# - the re-exec really happened: the start-up note says "re-executed with
#   OPENBLAS_CORETYPE set", and the rank's environment holds the core;
# - the core is the one OpenBLAS uses by itself, or, when that is below
#   what this CPU runs (even one the user chose), the best one for this CPU
#   (derived here from /proc/cpuinfo);
# - with DTRAIN_BLAS_REEXEC=0 nothing is re-executed; unset, dtrain
#   re-execs exactly when OpenBLAS's own core is below the best one
#   (Sapphire Rapids: Prescott; Zen 5: Haswell; Zen 4's Cooperlake stays).
. "$(dirname "$0")/lib.sh"
unset OPENBLAS_CORETYPE
small_config "$WORK/c.yaml" 100000 "checkpoint:"
best=$(best_blas_core)

rc=$(DTRAIN_BLAS_REEXEC=0 run 1 "$WORK/detected" --set train.steps=2 "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/detected.log"; die "the run without re-exec exited $rc"; }
detected=$(json_field "$WORK/detected/summary.json" blas_core)
[ -n "$detected" ] || die "no blas_core in summary.json"
! grep -q "re-executed" "$WORK/detected.log" || die "DTRAIN_BLAS_REEXEC=0, yet the note says re-executed"
better=$(better_core "$detected" "$best")
want=${better:-$detected}

# Unset: the default rule.
rc=$(unset DTRAIN_BLAS_REEXEC; run 1 "$WORK/default" --set train.steps=2 "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/default.log"; die "the default run exited $rc"; }
[ "$(json_field "$WORK/default/summary.json" blas_core)" = "$want" ] \
    || die "DTRAIN_BLAS_REEXEC unset: kernel $(json_field "$WORK/default/summary.json" blas_core), expected $want (OpenBLAS by itself: $detected, best here: ${best:-none})"
if [ -n "$better" ]; then
    grep -q "re-executed with OPENBLAS_CORETYPE set" "$WORK/default.log" || die "DTRAIN_BLAS_REEXEC unset, $detected below $best: no re-exec note"
else
    ! grep -q "re-executed" "$WORK/default.log" || die "DTRAIN_BLAS_REEXEC unset, $detected is as good as ${best:-none}: re-executed anyway"
fi
echo "default: OpenBLAS $want (by itself: $detected, best here: ${best:-none})"

# A long run in the background, looked at while it trains, then stopped.
export DTRAIN_BLAS_REEXEC=force
start_run 2 "$WORK/run" "$WORK/c.yaml"
launcher=$LAUNCHER
wait_for_steps "$WORK/run/metrics.jsonl" 5 120 || { cat "$WORK/run.log"; die "the run did not start"; }
job_ranks 2
ranks=$RANKS
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
[ "$rc" -eq 5 ] || { tail -n 30 "$WORK/run.log"; die "stopped run exited $rc, expected 5"; }
grep -q "(OpenBLAS $want, re-executed with OPENBLAS_CORETYPE set)" "$WORK/run.log" \
    || { head -n 5 "$WORK/run.log"; die "no note '(OpenBLAS $want, re-executed with OPENBLAS_CORETYPE set)'"; }
echo "forced re-exec: 2 ranks named dtrain, argv unchanged, OpenBLAS $want (by itself: $detected)"

# A fallback core the user chose: forced, dtrain re-execs into the best one.
if [ -n "$best" ]; then
    rc=$(OPENBLAS_CORETYPE=Prescott run 1 "$WORK/user" --set train.steps=2 "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || { cat "$WORK/user.log"; die "OPENBLAS_CORETYPE=Prescott: exit $rc"; }
    [ "$(json_field "$WORK/user/summary.json" blas_core)" = "$best" ] \
        || die "OPENBLAS_CORETYPE=Prescott, forced: kernel $(json_field "$WORK/user/summary.json" blas_core), expected $best"
    grep -q "re-executed with OPENBLAS_CORETYPE set" "$WORK/user.log" || die "OPENBLAS_CORETYPE=Prescott, forced: no re-exec note"
    echo "forced re-exec from the user's Prescott: OpenBLAS $best"
fi
echo "PASS"
