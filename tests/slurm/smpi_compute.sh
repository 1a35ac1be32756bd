#!/usr/bin/env bash
# smpi_compute.sh SMPI_DTRAIN: what compute costs on the simulated clock
# (src/simclock.h). One rank of 4 burns 300 ms of CPU as update 8 starts
# (DTRAIN_SMPI_TEST_STALL, the shape of a host stall). Charged as measured
# (SMPI's own charge), rank 0 waits for it in that update's exchange; charged
# at the median of the stretch's history (launch/scaling's default), the
# stall vanishes and update 8 takes what its neighbours take. The bits are
# the same in both modes: only the clock differs. And the mode refuses to
# run while SMPI's own charge is on, which would charge every stretch twice.
. "$(dirname "$0")/../lib.sh"
smpi_dtrain=$1
[ -x "$smpi_dtrain" ] || skip "no SMPI build at $smpi_dtrain"
new_work_dir dtrain-smpi-compute
cat >"$WORK/small.yaml" <<YAML
run: {seed: 0, out_dir: $WORK/unused}
data: {dir: $DT_TEST_DATA/ok}
model: {layers: [{dense: 64}, relu, {dense: 10}]}
train: {steps: 200, global_batch: 32, log_every: 4, eval_every: 0}
optimizer: {name: momentum, lr: 0.05}
YAML
for mode in measured median; do
    DTRAIN_SMPI_TEST_STALL=1:8:300 timeout -k 5 600 /usr/bin/python3 "$DT_SOURCE/launch/scaling" --backend smpi \
        --smpi-dtrain "$smpi_dtrain" --platform fast --ranks 4 --batch 32 --steps 12 --compute "$mode" \
        --out "$WORK/$mode" "$WORK/small.yaml" >"$WORK/$mode.log" 2>&1 || { cat "$WORK/$mode.log"; die "launch/scaling --compute $mode failed"; }
    runs=$WORK/$mode/runs.csv
    [ "$(column status "$runs")" = ok ] || { cat "$WORK/$mode.log"; die "$mode: the run failed"; }
    [ "$(column smpi_compute "$runs")" = "$mode" ] || die "$mode: runs.csv says smpi_compute=$(column smpi_compute "$runs")"
    out=$(column out_dir "$runs")
    grep -q -- "--cfg=smpi/simulate-computation:no" "$out.log" && [ $mode = measured ] && die "measured: SMPI's charge turned off"
    # rank 0's update 8 against the median of its other updates (ms of simulated time)
    /usr/bin/python3 - "$out.trace.json" >"$WORK/$mode.updates" <<'EOF' || die "$mode: no updates in the timeline"
import json, statistics, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
up = {e["args"]["step"]: e["dur"] / 1000 for e in ev
      if e.get("ph") == "X" and e.get("name") == "update" and e.get("pid") == 0}
others = [d for s, d in up.items() if s >= 3 and s != 8]
print(f"{up[8]:.3f} {statistics.median(others):.3f}")
EOF
    read -r stalled typical <"$WORK/$mode.updates"
    echo "$mode: update 8 took $stalled ms, the others $typical ms (median)"
    echo "$(json_field "$out/summary.json" param_checksum)" >"$WORK/$mode.checksum"
done
read -r stalled typical <"$WORK/measured.updates"
awk -v s="$stalled" -v t="$typical" 'BEGIN { exit !(s > 250 && s > t + 200) }' \
    || die "measured: rank 0 did not wait for the 300 ms stall of rank 1 (update 8: $stalled ms, others $typical ms)"
read -r stalled typical <"$WORK/median.updates"
awk -v s="$stalled" -v t="$typical" 'BEGIN { exit !(s < t + 50) }' \
    || die "median: the stall of rank 1 was charged (update 8: $stalled ms, others $typical ms)"
cmp -s "$WORK/measured.checksum" "$WORK/median.checksum" \
    || die "the modes trained different parameters: $(cat "$WORK/measured.checksum") vs $(cat "$WORK/median.checksum")"

# ---- the mode needs SMPI's own charge off ---------------------------------------
# (smpirun copies the binary into TMPDIR, once per rank; its -tmpdir is broken in 3.32)
platform=$DT_SOURCE/launch/platforms/cluster_16x8_fast.xml
for bad in "median:SMPI's own charge on" "fastest:an unknown mode"; do
    mkdir -p "$WORK/tmp" && rm -rf "$WORK/tmp"/*
    (cd "$WORK/tmp" && TMPDIR=$WORK/tmp DTRAIN_SMPI_COMPUTE=${bad%%:*} timeout -k 5 120 smpirun -np 2 \
        -platform "$platform" -hostfile "$DT_SOURCE/launch/platforms/hostfile_16x8" \
        "$smpi_dtrain" "$WORK/small.yaml" --set train.steps=2) >"$WORK/bad.log" 2>&1
    rc=$?
    [ $rc = 2 ] || { cat "$WORK/bad.log"; die "DTRAIN_SMPI_COMPUTE=${bad%%:*} with ${bad#*:}: exit $rc, expected 2"; }
    [ "$(grep -c "^dtrain: DTRAIN_SMPI_COMPUTE=${bad%%:*}" "$WORK/bad.log")" = 1 ] \
        || { cat "$WORK/bad.log"; die "DTRAIN_SMPI_COMPUTE=${bad%%:*}: not one message naming the setting"; }
    grep -q "cannot start MPI" "$WORK/bad.log" && die "DTRAIN_SMPI_COMPUTE=${bad%%:*}: blamed on MPI"
done
echo PASS
