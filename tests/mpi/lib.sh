# lib.sh - shared helpers of the MPI test scripts (sourced).
# Environment: DTRAIN, MPIEXEC, DT_TEST_DATA, DT_SOURCE (the source tree).
set -u
WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-mpi.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

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
