#!/usr/bin/env bash
# Path averaging (optimizer.average) across ranks and restarts:
#  1. sharded, where each rank averages only its own pieces and the copy is
#     gathered for evaluation and checkpoints, keeps the averaged copy of
#     the replicated update on 2 ranks (float tolerance: the two sum the
#     gradients in another order), for EMA and SWA; the copy is not the raw
#     parameters, and metrics.jsonl and summary.json report it;
#  2. a run stopped and resumed (--resume latest, also across the
#     replicated/sharded switch) ends with the uninterrupted run's
#     param_checksum and a final checkpoint identical byte for byte, so the
#     averaged copy continued exactly;
#  3. a checkpoint without an averaged copy does not resume a run with
#     averaging (exit 3, one clear message), and the reverse.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 200 "checkpoint: {every_steps: 0, keep: 3}" \
    "train: {steps: 200, global_batch: 32, log_every: 1, eval_every: 2}"

ok_run() { # ok_run NAME NP ARGS... : run, require exit 0
    local name=$1 np=$2 rc
    shift 2
    rc=$(run "$np" "$WORK/$name" "$@")
    [ "$rc" -eq 0 ] || { tail -n 20 "$WORK/$name.log"; die "$name exited $rc"; }
}
final_ckpt() { ls "$WORK/$1"/checkpoints/ckpt-*.dtck | tail -n 1; }
# arena FILE I: arena I of a checkpoint (0 = parameters, the last = the
# averaged copy), one float per line
arena() {
    local n
    n=$(od -An -tu8 -j32 -N8 "$1" | tr -d ' ')
    od -An -v -w4 -f -j $((88 + 4 * n * $2)) -N $((4 * n)) "$1" | tr -d ' '
}
slots() { od -An -tu4 -j44 -N4 "$1" | tr -d ' '; }
# close A B RTOL ATOL: two columns of floats agree elementwise
close() {
    paste <(echo "$1") <(echo "$2") | awk -v rtol="$3" -v atol="$4" '
        { d = $1 - $2; if (d < 0) d = -d; m = $2 < 0 ? -$2 : $2
          if (d > atol + rtol * m) { if (bad++ < 3) printf "element %d: %s vs %s\n", NR, $1, $2 }
          n++ }
        END { printf "%d values compared, %d differ\n", n, bad; exit bad > 0 || n == 0 }'
}

# 1. sharded == replicated, for both rules
for rule in "ema --set optimizer.average_decay=0.95" "swa --set optimizer.average_start=120"; do
    name=${rule%% *}
    set -- --set optimizer.average=$rule --set checkpoint.every_steps=50
    ok_run rep_$name 2 "$@" "$WORK/c.yaml"
    ok_run sh_$name 2 "$@" --set comm.update=sharded "$WORK/c.yaml"
    grep -q "gradient exchange: sharded update" "$WORK/sh_$name.log" || die "$name: not sharded"
    # step 150: 22 updates after the last evaluation (128), so only the
    # checkpoint's own gather makes the sharded copy whole; and the end
    for step in 150 200; do
        a=$WORK/rep_$name/checkpoints/ckpt-000000000$step.dtck
        b=$WORK/sh_$name/checkpoints/ckpt-000000000$step.dtck
        [ "$(slots "$a")" = 3 ] || die "$name: $(slots "$a") arenas in the checkpoint, expected adam's 2 + the average"
        close "$(arena "$b" 3)" "$(arena "$a" 3)" 1e-4 1e-6 \
            || die "$name: the sharded run's averaged copy at step $step differs from the replicated run's"
    done
    close "$(arena "$a" 3)" "$(arena "$a" 0)" 1e-4 1e-6 > /dev/null \
        && die "$name: the averaged copy equals the raw parameters"
    for s in rep_$name sh_$name; do
        acc=$(json_field "$WORK/$s/summary.json" avg_test_accuracy)
        [ -n "$acc" ] && [ "$acc" != null ] || die "$s: summary.json has no avg_test_accuracy"
        grep '"kind":"eval"' "$WORK/$s/metrics.jsonl" | tail -n 1 | grep -q '"avg_test_accuracy":[0-9]' \
            || die "$s: the last eval record has no avg_test_accuracy"
    done
    # SWA starts after update 120: the evaluations before it have no average yet
    if [ "$name" = swa ]; then
        grep '"kind":"eval","step":64,' "$WORK/rep_swa/metrics.jsonl" | grep -q '"avg_test_accuracy":null' \
            || die "swa: an evaluation before average_start reports an average"
    fi
    echo "$name: sharded averaged copy == replicated ($a)"
done

# 2. stop and resume: the same bits as the uninterrupted run (and, resumed
# sharded on 3 ranks, the same copy to float tolerance)
for rule in "ema --set optimizer.average_decay=0.9" "swa --set optimizer.average_start_epochs=1"; do
    name=${rule%% *}
    set -- --set optimizer.average=$rule --set checkpoint.every_steps=50
    ok_run full_$name 2 "$@" "$WORK/c.yaml"
    ok_run part_$name 2 "$@" --set train.steps=150 "$WORK/c.yaml"
    cp -r "$WORK/part_$name" "$WORK/part3_$name" || die "cannot copy the run"
    resume_latest 2 "$WORK/part_$name" 150 200 "$@" "$WORK/c.yaml"
    a=$(json_field "$WORK/full_$name/summary.json" param_checksum)
    b=$(json_field "$WORK/part_$name/summary.json" param_checksum)
    [ "$a" = "$b" ] || die "$name: param_checksum $b after resume, $a uninterrupted"
    cmp "$(final_ckpt full_$name)" "$(final_ckpt part_$name)" \
        || die "$name: the resumed run's final checkpoint differs from the uninterrupted run's"
    [ "$(json_field "$WORK/full_$name/summary.json" avg_test_accuracy)" = \
      "$(json_field "$WORK/part_$name/summary.json" avg_test_accuracy)" ] || die "$name: avg_test_accuracy differs"
    resume_latest 3 "$WORK/part3_$name" 150 200 "$@" --set comm.update=sharded "$WORK/c.yaml"
    close "$(arena "$(final_ckpt part3_$name)" 3)" "$(arena "$(final_ckpt full_$name)" 3)" 1e-4 1e-6 \
        || die "$name: the averaged copy after resuming sharded on 3 ranks differs"
    echo "$name: resumed run bit-identical ($a); resumed sharded on 3 ranks within float tolerance"
done

# 3. averaging on or off must match the checkpoint
ok_run plain 2 --set checkpoint.every_steps=50 --set train.steps=100 "$WORK/c.yaml"
rc=$(run 2 "$WORK/plain" --resume latest --set optimizer.average=ema "$WORK/c.yaml")
[ "$rc" -eq 3 ] || { tail "$WORK/plain.log"; die "resuming without an averaged copy exited $rc, expected 3"; }
grep -q "optimizer.average keeps one more" "$WORK/plain.log" || { tail "$WORK/plain.log"; die "no clear message"; }
[ "$(grep '^dtrain: ' "$WORK/plain.log" | grep -vc '^dtrain: warning:')" = 1 ] || die "not one error line"
rc=$(run 2 "$WORK/full_ema" --resume latest "$WORK/c.yaml")
[ "$rc" -eq 3 ] || die "resuming an averaged checkpoint without averaging exited $rc, expected 3"
echo "PASS"
