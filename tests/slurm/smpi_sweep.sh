#!/usr/bin/env bash
# smpi_sweep.sh SMPI_DTRAIN: a small simulated strong-scaling sweep (P = 1, 2,
# 4, 8, 16 on the 16 x 8 fast-network platform, a few updates of the small
# MLP) through launch/scaling; checks runs.csv and scaling.csv (and the
# plots when gnuplot is there). Then a sweep of a config key as a series
# (--series, P = 1, 2, 4): each value reaches dtrain, is its own series with
# its own 1-rank baseline, and gets its own split plot. Last, --nonblocking
# (buckets overlapped with backward in simulated time) at P = 16.
. "$(dirname "$0")/../lib.sh"
smpi_dtrain=$1
[ -x "$smpi_dtrain" ] || skip "no SMPI build at $smpi_dtrain"
new_work_dir dtrain-smpi
cat >"$WORK/small.yaml" <<YAML
run: {seed: 0, out_dir: $WORK/unused}
data: {dir: $DT_TEST_DATA/ok}
model: {layers: [{dense: 64}, relu, {dense: 10}]}
train: {steps: 200, global_batch: 32, log_every: 10}
optimizer: {name: momentum, lr: 0.05}
YAML
timeout -k 5 600 /usr/bin/python3 "$DT_SOURCE/launch/scaling" --backend smpi --smpi-dtrain "$smpi_dtrain" \
    --platform fast --ranks "1 2 4 8 16" --repeats 2 --batch 32 --steps 8 --out "$WORK/out" "$WORK/small.yaml" \
    >"$WORK/scaling.log" 2>&1 || { cat "$WORK/scaling.log"; die "launch/scaling failed"; }
cat "$WORK/scaling.log"
runs=$WORK/out/runs.csv sum=$WORK/out/scaling.csv
[ -s "$runs" ] && [ -s "$sum" ] || die "no runs.csv / scaling.csv"
[ "$(column ranks "$runs" | sort -n | paste -sd' ')" = "1 1 2 2 4 4 8 8 16 16" ] || die "ranks in runs.csv: $(column ranks "$runs" | paste -sd' ')"
[ "$(column status "$runs" | sort -u)" = ok ] || die "not every run succeeded"
paste -d' ' <(column ranks "$runs") <(column nodes "$runs") | awk '$2 != int(($1 + 7) / 8) { exit 1 }' \
    || die "nodes $(column nodes "$runs" | paste -sd' ') for ranks $(column ranks "$runs" | paste -sd' '), expected 8 ranks per node"
[ "$(column global_batch "$runs" | sort -u)" = 32 ] || die "global batch not fixed at 32"
[ "$(column steps "$runs" | sort -u)" = 8 ] || die "steps not 8"
[ "$(column backend "$runs" | sort -u)" = smpi ] || die "backend column"
column blas_core "$runs" | awk '$1 == "" { exit 1 }' || die "a run without its OpenBLAS kernel (blas_core)"
[ "$(column cpu "$runs" | sort -u | wc -l)" = 1 ] && [ -n "$(column cpu "$runs" | head -n 1)" ] \
    || die "cpu column: '$(column cpu "$runs" | sort -u | paste -sd'|')'"
column samples_per_second "$runs" | awk '!($1 > 0) { exit 1 }' || die "samples_per_second not positive"
# under SMPI a run's samples/s is the global batch over rank 0's median
# update, read from the run's timeline; summary.json's mean is kept beside it
paste -d' ' <(column samples_per_second "$runs") <(column global_batch "$runs") \
    <(column median_update_ms "$runs") <(column mean_samples_per_second "$runs") \
    | awk '!($3 > 0 && $4 > 0) { exit 1 } { r = $2 * 1000 / $3 / $1; if (r < 0.999 || r > 1.001) exit 1 }' \
    || die "samples_per_second is not the global batch over median_update_ms (or a column is empty)"
paste -d' ' <(column ranks "$runs") <(column communication_s "$runs") | awk '$1 > 1 && !($2 > 0) { exit 1 }' \
    || die "no communication time at P > 1"
[ "$(column speedup "$sum" | head -n 1)" = 1.0000 ] || die "speedup at 1 rank is not 1"
paste -d' ' <(column ranks "$sum") <(column speedup "$sum") <(column efficiency "$sum") \
    | awk '{ if (($3 - $2 / $1) > 1e-3 || ($2 / $1 - $3) > 1e-3) exit 1 }' || die "efficiency != speedup / ranks"
# every run on the simulated cluster computes the same updates up to
# summation order: the model must still learn at every P
column test_accuracy "$runs" | awk '!($1 > 0.5) { exit 1 }' || die "a simulated run did not learn"
# Runs at the same rank count make the same updates in the same order, so
# their parameters are bit-identical: the two repeats of each P must report
# one param_checksum (a 16-hex-digit value, not an empty column).
paste -d' ' <(column ranks "$runs") <(column param_checksum "$runs") | awk '
    length($2) != 16 || $2 !~ /^[0-9a-f]+$/ { printf "P=%s: param_checksum \"%s\"\n", $1, $2; bad = 1 }
    ($1 in seen) && seen[$1] != $2 { printf "P=%s: param_checksum %s vs %s\n", $1, seen[$1], $2; bad = 1 }
    { seen[$1] = $2 } END { exit bad }' || die "simulated runs that make the same updates disagree on param_checksum"
if command -v gnuplot >/dev/null; then
    for f in throughput efficiency split-smpi-fast-strong; do
        [ -s "$WORK/out/$f.png" ] || die "no $f.png"
    done
    # readable ticks: rank counts and 1-2-5 samples/s labels, no raw numbers
    tics=$(grep -E '^set (x|y)tics \(' "$WORK/out/plotdata/plots.gp")
    grep -q "^set xtics ('1' 1, '2' 2, '4' 4, '8' 8, '16' 16)" <<<"$tics" || die "x tics: $tics"
    grep -E "^set ytics \(" <<<"$tics" | grep -qE "'[125]0?0?(\.[0-9]+)?[kM]?' " || die "y tics: $tics"
    grep -E "^set ytics \(" <<<"$tics" | grep -qE "'[0-9]{4,}' " && die "unreadable y tics: $tics"
fi

# ---- a config key as a series ---------------------------------------------------
timeout -k 5 600 /usr/bin/python3 "$DT_SOURCE/launch/scaling" --backend smpi --smpi-dtrain "$smpi_dtrain" \
    --platform fast --ranks "1 2 4" --batch 32 --steps 4 --series comm.bucket_kb=64,512 \
    --smpi-cfg network/crosstraffic:1 --out "$WORK/series" "$WORK/small.yaml" >"$WORK/series.log" 2>&1 \
    || { cat "$WORK/series.log"; die "launch/scaling --series failed"; }
cat "$WORK/series.log"
runs=$WORK/series/runs.csv sum=$WORK/series/scaling.csv
[ "$(column series_key "$runs" | sort -u)" = comm.bucket_kb ] || die "series_key in runs.csv"
[ "$(column series_value "$runs" | paste -sd' ')" = "64 64 64 512 512 512" ] || die "series_value in runs.csv: $(column series_value "$runs" | paste -sd' ')"
[ "$(column status "$runs" | sort -u)" = ok ] || die "not every series run succeeded"
# the value reached dtrain: each run's resolved configuration
for d in $(column out_dir "$runs"); do
    want=$(sed -E 's/.*comm\.bucket_kb=([0-9]+).*/\1/' <<<"$d")
    grep -qE "^ +bucket_kb: $want\$" "$d/config.resolved.yaml" || die "$d/config.resolved.yaml: bucket_kb is not $want"
    # --smpi-cfg reached SimGrid (1 is the SMPI model's default: nothing changes)
    grep -q "Set 'network/crosstraffic' to '1'" "$d.log" || die "$d.log: --smpi-cfg did not reach SimGrid"
done
[ "$(column series "$sum" | paste -sd' ')" = "$(printf 'smpi-fast-strong-comm.bucket_kb=%s ' 64 64 64 512 512 512 | sed 's/ $//')" ] \
    || die "series in scaling.csv: $(column series "$sum" | paste -sd' ')"
[ "$(column speedup "$sum" | paste -sd' ')" != "" ] || die "no speedup"
paste -d' ' <(column ranks "$sum") <(column speedup "$sum") | awk '$1 == 1 && $2 != "1.0000" { exit 1 }' \
    || die "a series is not measured against its own 1-rank run"
if command -v gnuplot >/dev/null; then
    for v in 64 512; do
        [ -s "$WORK/series/split-smpi-fast-strong-comm.bucket_kb=$v.png" ] || die "no split plot for bucket_kb=$v"
    done
    [ "$(grep -c "title 'strong scaling, SMPI, 16x8 fast network, comm.bucket_kb=" "$WORK/series/plotdata/plots.gp")" -ge 4 ] \
        || die "a series has no line of its own in throughput.png and efficiency.png"
fi

# ---- --nonblocking: the phases as non-blocking collectives, overlapped -------------
# P = 16 (2 nodes x 8: the node-aware chain with its inter-node Alltoallv)
# and a 64 KiB bucket of the 51k-parameter MLP: several buckets, started as
# backward reports its ranges; twice, as the same simulation gives the same
# bits.
timeout -k 5 600 /usr/bin/python3 "$DT_SOURCE/launch/scaling" --backend smpi --smpi-dtrain "$smpi_dtrain" \
    --platform commodity --ranks "16" --repeats 2 --batch 32 --steps 6 --nonblocking \
    --set comm.allreduce=hierarchical --set comm.bucket_kb=64 --series comm.update=replicated,sharded \
    --out "$WORK/nb" "$WORK/small.yaml" >"$WORK/nb.log" 2>&1 \
    || { cat "$WORK/nb.log"; die "launch/scaling --nonblocking failed"; }
runs=$WORK/nb/runs.csv
[ "$(column status "$runs" | sort -u)" = ok ] || die "not every --nonblocking run succeeded"
for d in $(column out_dir "$runs"); do
    grep -q "buckets of up to 64 KiB, overlapped with backward" "$d.log" \
        || die "$d.log: the buckets are not overlapped with backward: $(grep 'gradient exchange' "$d.log")"
done
paste -d' ' <(column series_value "$runs") <(column param_checksum "$runs") | awk '
    length($2) != 16 { bad = 1 } ($1 in seen) && seen[$1] != $2 { bad = 1 } { seen[$1] = $2 } END { exit bad }' \
    || die "--nonblocking repeats disagree on param_checksum"
column test_accuracy "$runs" | awk '!($1 > 0.5) { exit 1 }' || die "a --nonblocking run did not learn"
echo PASS
