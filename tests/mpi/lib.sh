# lib.sh - shared helpers of the MPI test scripts (sourced).
# Environment: DTRAIN, MPIEXEC, DT_TEST_DATA, DT_SOURCE (the source tree).
set -u
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-mpi.XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

die() { echo "FAIL: $*"; exit 1; }

# run NP OUT_DIR ARGS... : dtrain on NP ranks, output in OUT_DIR, log in OUT_DIR.log
run() {
    local np=$1 out=$2
    shift 2
    # shellcheck disable=SC2086
    timeout -k 5 600 $MPIEXEC -np "$np" "$DTRAIN" --set "run.out_dir=$out" "$@" > "$out.log" 2>&1
    local rc=$?
    echo "$rc"
}

# json_field FILE KEY : the value of "KEY": in a summary.json (no quotes)
json_field() {
    sed -n "s/^ *\"$2\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1" | head -n 1
}

# train_losses FILE : "step loss" lines of the train records in metrics.jsonl
train_losses() {
    sed -n 's/^{"kind":"train","step":\([0-9]*\),"epoch":[0-9]*,"loss":\([^,]*\),.*/\1 \2/p' "$1"
}

# small_config FILE STEPS [EXTRA YAML LINES...] : the synthetic data set, a
# small MLP, Adam at a constant rate, a checkpoint every 50 updates.
small_config() {
    local file=$1 steps=$2
    shift 2
    {
        echo "run: {name: small, seed: 5}"
        echo "data: {dir: $DT_TEST_DATA/ok}"
        echo "model: {layers: [{dense: 48}, relu, {dense: 10}]}"
        echo "train: {steps: $steps, global_batch: 32, log_every: 1}"
        echo "optimizer: {name: adam, lr: 0.001}"
        echo "checkpoint: {every_steps: 50, keep: 3}"
        for line in "$@"; do echo "$line"; done
    } > "$file"
}

# wait_for_steps FILE N TIMEOUT : until metrics FILE has N train records
wait_for_steps() {
    local file=$1 n=$2 deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        [ -f "$file" ] && [ "$(grep -c '"kind":"train"' "$file")" -ge "$n" ] && return 0
        sleep 0.05
    done
    return 1
}

# compare_losses A B RTOL : train losses of the steps both logged agree
compare_losses() {
    join <(train_losses "$1" | sort -k1,1) <(train_losses "$2" | sort -k1,1) |
        awk -v rtol="$3" '
            { d = $2 - $3; if (d < 0) d = -d; m = $3 < 0 ? -$3 : $3
              if (d > rtol * m + 1e-7) { printf "step %d: %s vs %s\n", $1, $2, $3; bad = 1 }
              n++ }
            END { printf "%d common steps compared\n", n; exit bad || n == 0 }'
}
