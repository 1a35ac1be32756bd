#!/usr/bin/env bash
# weights.sh NP - the weights forms of the command line, end to end, on NP
# ranks (the small MLP on the synthetic data set):
#   1. a run writes out/model.safetensors (and says so); --export of its last
#      checkpoint (by file, by folder, and as latest) writes the very same
#      bytes; -o puts it elsewhere;
#   2. --evaluate of the exported file and of the checkpoint report exactly
#      the run's final test loss and accuracy, print the class table and the
#      confusion matrix, and write evaluate/summary.json whose matrix sums to
#      the test set and whose diagonal is the correct count;
#   3. model.init_from of the exported file starts a run from those weights:
#      with a learning rate too small to move a float (1e-30), that run ends
#      with the same param_checksum and test loss as the run that wrote them;
#   4. init_from of another model's weights is exit 3 naming the tensor and
#      both shapes, with nothing written; a damaged file likewise;
#   5. --resume wins over init_from: the file is not even read;
#   6. a storage fault on model.safetensors is exit 1 and one line, and
#      leaves neither a temporary file nor a summary.json.
# Environment: DTRAIN, MPIEXEC, DT_TEST_DATA (as run_case.sh), DT_FAULT_LIB
# (the preload library of tests/tools/fault_inject.c).
. "$(dirname "$0")/../lib.sh"
np=$1
new_work_dir dtrain-weights

# dt OUT_LOG ARGS... : dtrain on NP ranks; stdout+stderr in OUT_LOG; prints the status
dt() {
    local log=$1
    shift
    # shellcheck disable=SC2086
    timeout -k 5 120 $MPIEXEC -np "$np" "$DTRAIN" "$@" > "$log" 2>&1
    echo $?
}
no_crash() {
    ! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|core dumped' "$1" ||
        { cat "$1"; die "crash or sanitizer report in $1"; }
}

small_config a.yaml 8 "run: {name: a, seed: 5, out_dir: $WORK/a}" \
    "checkpoint: {every_steps: 4, keep: 2}" "train: {steps: 8, global_batch: 32, log_every: 1, eval_every: 0}"
rc=$(dt a.log a.yaml)
no_crash a.log
[ "$rc" -eq 0 ] || { cat a.log; die "training run exited $rc"; }
[ -s a/model.safetensors ] || die "the run wrote no model.safetensors"
grep -q "weights: $WORK/a/model.safetensors" a.log || die "the run did not name its weights file"
ls -a a | grep -q '\.tmp' && die "a temporary file was left in the run folder"
# the header: the model's four tensors in PyTorch's shapes, and the metadata
head -c 400 a/model.safetensors | tr -d '\0' > header.txt
for want in '"0.weight":{"dtype":"F32","shape":[48,784]' '"0.bias":{"dtype":"F32","shape":[48]' \
            '"2.weight":{"dtype":"F32","shape":[10,48]' '"2.bias":{"dtype":"F32","shape":[10]' \
            '"step":"8"' '"format":"pt"' '"config_hash":"'; do
    grep -qF "$want" header.txt || die "model.safetensors header lacks $want: $(cat header.txt)"
done
size=$(stat -c %s a/model.safetensors)
hlen=$(od -An -tu8 -N8 a/model.safetensors | tr -d ' ')
[ "$size" -eq $((8 + hlen + 4 * (48 * 784 + 48 + 10 * 48 + 10))) ] ||
    die "model.safetensors is $size bytes, header $hlen"

# 1. --export: every way of naming the last checkpoint gives the same bytes
ckpt=a/checkpoints/ckpt-000000000008.dtck
[ -f "$ckpt" ] || die "no final checkpoint $ckpt"
for what in "$ckpt" a/checkpoints a latest; do
    rm -f x.safetensors
    rc=$(dt export.log --export "$what" -o x.safetensors a.yaml)
    no_crash export.log
    [ "$rc" -eq 0 ] || { cat export.log; die "--export $what exited $rc"; }
    cmp -s x.safetensors a/model.safetensors || die "--export $what differs from the run's export"
    grep -q "exported .*ckpt-000000000008.dtck (checkpoint, step 8)" export.log ||
        { cat export.log; die "--export $what did not say what it exported"; }
done
# the default output is run.out_dir/model.safetensors (written again, the same)
rm a/model.safetensors
rc=$(dt export.log --export latest a.yaml)
[ "$rc" -eq 0 ] && cmp -s x.safetensors a/model.safetensors || die "--export to the default path failed"

# 2. --evaluate of the weights file and of the checkpoint: the run's figures
# the test set's class counts, from its label file (8 header bytes, then a byte each)
labels=$DT_TEST_DATA/ok/t10k-labels-idx1-ubyte
{ [ -f "$labels" ] && cat "$labels" || gzip -dc "$labels.gz"; } | tail -c +9 | od -An -tu1 -v |
    tr -s ' ' '\n' | grep . | sort -n | uniq -c | awk '{ printf "%s%d", (NR > 1 ? ", " : ""), $1 }' > counts.txt
[ -s counts.txt ] || die "cannot count the test labels"
acc=$(json_field a/summary.json test_accuracy)
loss=$(json_field a/summary.json test_loss)
for what in a/model.safetensors "$ckpt"; do
    rm -rf a/evaluate
    rc=$(dt eval.log --evaluate "$what" a.yaml)
    no_crash eval.log
    [ "$rc" -eq 0 ] || { cat eval.log; die "--evaluate $what exited $rc"; }
    s=a/evaluate/summary.json
    [ -s "$s" ] || die "--evaluate wrote no $s"
    [ "$(json_field "$s" test_accuracy)" = "$acc" ] ||
        die "--evaluate $what: test_accuracy $(json_field "$s" test_accuracy), the run had $acc"
    [ "$(json_field "$s" test_loss)" = "$loss" ] ||
        die "--evaluate $what: test_loss $(json_field "$s" test_loss), the run had $loss"
    [ "$(json_field "$s" step)" = 8 ] || die "--evaluate $what: step $(json_field "$s" step)"
    [ "$(json_field "$s" world_size)" = "$np" ] || die "--evaluate $what: world_size"
    [ "$(json_field "$s" test_samples)" = 256 ] || die "--evaluate $what: test_samples"
    correct=$(json_field "$s" test_correct)
    # the matrix: 10 rows of 10 counts, summing to 256, its trace the correct count
    sed -n '/"confusion_matrix"/,/^  \]/p' "$s" | tr -d '[],' | awk -v correct="$correct" '
        NF == 10 { for (j = 1; j <= 10; j++) { sum += $j; if (j == rows + 1) trace += $j } rows++ }
        END { if (rows != 10 || sum != 256 || trace != correct) {
                  printf "rows %d sum %d trace %d correct %d\n", rows, sum, trace, correct; exit 1 } }' ||
        die "--evaluate $what: the confusion matrix does not add up"
    # rows are the true classes: their sums are the test set's class counts
    grep -qF "\"class_samples\": [$(cat counts.txt)]," "$s" ||
        die "--evaluate $what: class_samples are not the test set's class counts ($(cat counts.txt))"
    sed -n '/"confusion_matrix"/,/^  \]/p' "$s" | tr -d '[],' |
        awk 'NF == 10 { s = 0; for (j = 1; j <= 10; j++) s += $j; printf "%s%d", (n++ ? ", " : ""), s }' \
        > rows.txt
    [ "$(cat rows.txt)" = "$(cat counts.txt)" ] || die "--evaluate $what: row sums $(cat rows.txt)"
    grep -q '"class_accuracy": \[' "$s" || die "per-class fields"
    grep -q "^test_loss .* test_accuracy .* ($correct of 256)" eval.log || { cat eval.log; die "no result line"; }
    grep -q '^class  samples  correct  accuracy' eval.log || die "no class table"
    grep -q '^confusion matrix (rows: true class, columns: predicted class)' eval.log || die "no matrix"
    [ "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ +[01]\.[0-9]{4}$' eval.log)" -eq 10 ] ||
        { cat eval.log; die "the class table has not 10 rows"; }
done
# -o names the summary file
rc=$(dt eval.log --evaluate a/model.safetensors -o elsewhere/e.json a.yaml)
[ "$rc" -eq 0 ] && [ -s elsewhere/e.json ] || die "--evaluate -o elsewhere/e.json"

# 3. init_from: a run from the exported weights that cannot move them
small_config b.yaml 3 "run: {name: b, seed: 9, out_dir: $WORK/b}" \
    "model: {layers: [{dense: 48}, relu, {dense: 10}], init_from: $WORK/a/model.safetensors}" \
    "optimizer: {name: sgd, lr: 1.0e-30}" "train: {steps: 3, global_batch: 32, log_every: 1, eval_every: 0}"
rc=$(dt b.log b.yaml)
no_crash b.log
[ "$rc" -eq 0 ] || { cat b.log; die "init_from run exited $rc"; }
grep -q "initial weights: $WORK/a/model.safetensors" b.log || die "the run did not name its initial weights"
[ "$(json_field b/summary.json param_checksum)" = "$(json_field a/summary.json param_checksum)" ] ||
    die "init_from did not start from the file's weights (param_checksum differs)"
[ "$(json_field b/summary.json test_loss)" = "$loss" ] || die "init_from: test_loss differs"

# 4. another model's weights: exit 3, the tensor and both shapes, nothing written
sed -e 's/{dense: 48}/{dense: 32}/' -e "s|out_dir: $WORK/b|out_dir: $WORK/c|" b.yaml > c.yaml
rc=$(dt c.log c.yaml)
no_crash c.log
[ "$rc" -eq 3 ] || { cat c.log; die "init_from of another model exited $rc, expected 3"; }
grep -qF "dtrain: model.init_from: $WORK/a/model.safetensors: tensor \"0.weight\": shape [48, 784], expected [32, 784]" c.log ||
    { cat c.log; die "init_from of another model: message"; }
[ "$(grep -c '^dtrain: ' c.log)" -eq 1 ] || die "more than one error line"
[ ! -e c ] || die "a failed init_from left $WORK/c behind"
# a damaged file: cut short
head -c 5000 a/model.safetensors > cut.safetensors
sed -e "s|init_from: $WORK/a/model.safetensors|init_from: $WORK/cut.safetensors|" \
    -e "s|out_dir: $WORK/b|out_dir: $WORK/d|" b.yaml > d.yaml
rc=$(dt d.log d.yaml)
no_crash d.log
[ "$rc" -eq 3 ] || { cat d.log; die "init_from of a cut file exited $rc, expected 3"; }
grep -qF "model.init_from: $WORK/cut.safetensors: tensor \"" d.log && grep -q 'lie beyond the data' d.log ||
    { cat d.log; die "init_from of a cut file: message"; }
# the same file given to --evaluate
rc=$(dt e.log --evaluate cut.safetensors a.yaml)
[ "$rc" -eq 3 ] && grep -q "^dtrain: cut.safetensors: tensor " e.log || { cat e.log; die "--evaluate of a cut file"; }

# 5. --resume wins over init_from: a file that is not there is not read
rc=$(dt r.log --resume latest --set model.init_from=/nonexistent.safetensors --set train.steps=12 a.yaml)
no_crash r.log
[ "$rc" -eq 0 ] || { cat r.log; die "--resume with a missing init_from exited $rc"; }
grep -q 'resumed from' r.log || die "did not resume"
grep -q 'initial weights' r.log && die "a resumed run claims initial weights from init_from"
# 6. a full disk while writing model.safetensors: exit 1, one line naming the
# file and the cause, no temporary file, no summary.json (faults injected by
# tests/tools/fault_inject.c, preloaded)
[ -n "${DT_FAULT_LIB:-}" ] && [ -f "$DT_FAULT_LIB" ] || die "DT_FAULT_LIB not built: ${DT_FAULT_LIB:-unset}"
rc=$(DT_FAULT_PATH="$WORK/f" DT_FAULT_NAME=model.safetensors DT_FAULT_OP=write DT_FAULT_ERRNO=ENOSPC \
     LD_PRELOAD="$DT_FAULT_LIB" ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
     dt f.log --set run.out_dir="$WORK/f" a.yaml)
no_crash f.log
[ "$rc" -eq 1 ] || { cat f.log; die "a full disk on model.safetensors exited $rc, expected 1"; }
grep -q "^dtrain: $WORK/f/model.safetensors: cannot write: No space left on device" f.log &&
    [ "$(grep -c '^dtrain: ' f.log)" -eq 1 ] || { cat f.log; die "a full disk on model.safetensors: message"; }
[ ! -e f/model.safetensors ] && [ ! -e f/summary.json ] || die "files written after the failed export"
[ -z "$(find f -name '*.tmp*')" ] || die "a temporary file was left: $(find f -name '*.tmp*')"
# 7. with optimizer.average the exports are the average along the path: the
# run's own model.safetensors and --export of its last checkpoint both
# evaluate to the run's avg_test_loss, not its test_loss
small_config g.yaml 8 "run: {name: g, seed: 5, out_dir: $WORK/g}" \
    "checkpoint: {every_steps: 4, keep: 2}" "train: {steps: 8, global_batch: 32, log_every: 1, eval_every: 0}" \
    "optimizer: {name: adam, lr: 0.001, average: ema, average_decay: 0.5}"
rc=$(dt g.log g.yaml)
no_crash g.log
[ "$rc" -eq 0 ] || { cat g.log; die "the averaging run exited $rc"; }
avg_loss=$(json_field g/summary.json avg_test_loss)
raw_loss=$(json_field g/summary.json test_loss)
[ -n "$avg_loss" ] && [ "$avg_loss" != null ] && [ "$avg_loss" != "$raw_loss" ] ||
    die "the averaging run: avg_test_loss '$avg_loss', test_loss '$raw_loss'"
rc=$(dt gx.log --export latest -o "$WORK/g/exported.safetensors" g.yaml)
no_crash gx.log
[ "$rc" -eq 0 ] || { cat gx.log; die "--export of an averaging run's checkpoint exited $rc"; }
for what in g/model.safetensors g/exported.safetensors; do
    rm -rf g/evaluate
    rc=$(dt gv.log --evaluate "$what" g.yaml)
    no_crash gv.log
    [ "$rc" -eq 0 ] || { cat gv.log; die "--evaluate $what exited $rc"; }
    got=$(json_field g/evaluate/summary.json test_loss)
    [ "$got" = "$avg_loss" ] || die "--evaluate $what: test_loss $got; the run's average had $avg_loss (raw $raw_loss)"
done
echo "PASS weights (np $np)"
