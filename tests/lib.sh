# lib.sh - helpers shared by every shell test (sourced, directly or through
# tests/mpi/lib.sh and tests/slurm/lib.sh).
#
# A test works only inside its own fresh folder: new_work_dir makes it (and
# fails the test when it cannot, instead of writing next to a TMPDIR that is
# not there), cds into it and removes it at exit unless the test failed or
# KEEP_WORK is set. A test that cannot run here says SKIP and exits 77, which
# ctest reports as skipped (SKIP_RETURN_CODE 77), never as passed.
set -u
SKIP=77

die() { echo "FAIL: $*"; exit 1; }
skip() { echo "SKIP: $*"; exit "$SKIP"; }

# Open MPI keeps its session folders in $TMPDIR/ompi.<host>.<uid> and
# removes that folder when its last job ends. Two mpiruns at once (ctest
# -j2) race there, one removing it while the other creates its job's
# folder: "orte_session_dir failed", seen once in CI. A folder of ours in
# it keeps it (its cleanup removes files there, not other folders).
dt_keep_ompi_session_dir() {
    local dir
    dir="${TMPDIR:-/tmp}/ompi.$(uname -n | cut -d. -f1).$(id -u)/dtrain-keep"
    { mkdir -p "$dir" && touch "$dir/keep"; } 2>/dev/null || true
}
dt_keep_ompi_session_dir

# new_work_dir NAME [PARENT]: sets WORK to a fresh empty folder NAME.XXXXXX
# under PARENT (default ${TMPDIR:-/tmp}) and cds into it.
new_work_dir() {
    local parent=${2:-${TMPDIR:-/tmp}}
    WORK=$(mktemp -d "$parent/$1.XXXXXX") || die "cannot make a work folder in '$parent'"
    case $WORK in /?*) ;; *) die "work folder '$WORK' is not an absolute path" ;; esac
    [ -d "$WORK" ] && [ -z "$(ls -A "$WORK")" ] || die "work folder '$WORK' is not a fresh folder"
    cd "$WORK" || die "cannot enter $WORK"
    trap 'dt_cleanup_work' EXIT
}

# The EXIT trap of new_work_dir: keep the evidence of a failure. Scripts that
# need more at exit set DT_AT_EXIT to a command run first.
DT_AT_EXIT=
dt_cleanup_work() {
    local rc=$?
    [ -z "$DT_AT_EXIT" ] || eval "$DT_AT_EXIT"
    cd / || true
    if [ "$rc" -eq 0 ] && [ -z "${KEEP_WORK:-}" ]; then
        rm -rf "$WORK"
    else
        echo "(files kept in $WORK)"
    fi
}

# json_field FILE KEY: the value of "KEY": in a summary.json (quotes removed)
json_field() {
    sed -n "s/^ *\"$2\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1" | head -n 1
}

# column NAME FILE: that column of a CSV written by launch/scaling (no
# quoted commas in those files; Python's csv module ends lines with CR LF)
column() { awk -F, -v k="$1" '{ sub(/\r$/, "") } NR == 1 { for (i = 1; i <= NF; i++) if ($i == k) c = i; next } { print $c }' "$2"; }

# train_losses FILE: "step loss" lines of the train records of a metrics.jsonl
train_losses() {
    sed -n 's/^{"kind":"train","step":\([0-9]*\),"epoch":[0-9]*,"loss":\([^,]*\),.*/\1 \2/p' "$1"
}

# last_train_step FILE: the step of the last train record (empty if none)
last_train_step() {
    sed -n 's/^{"kind":"train","step":\([0-9]*\),.*/\1/p' "$1" 2>/dev/null | tail -n 1
}

# small_config FILE STEPS [YAML LINES...]: the small MLP on the synthetic
# data set, logging every update, Adam at a constant rate, a checkpoint every
# 50 updates. A line "SECTION: ..." replaces that section of the default (so
# the YAML never holds a key twice), a bare "SECTION:" drops it (dtrain's
# defaults apply); other lines are appended.
small_config() {
    local file=$1 steps=$2 line key i
    shift 2
    local sections=(
        "run: {name: small, seed: 5}"
        "data: {dir: $DT_TEST_DATA/ok}"
        "model: {layers: [{dense: 48}, relu, {dense: 10}]}"
        "train: {steps: $steps, global_batch: 32, log_every: 1}"
        "optimizer: {name: adam, lr: 0.001}"
        "checkpoint: {every_steps: 50, keep: 3}"
    )
    for line in "$@"; do
        key=${line%%:*}
        for i in "${!sections[@]}"; do
            if [ "${sections[$i]%%:*}" = "$key" ]; then sections[$i]=$line; continue 2; fi
        done
        sections+=("$line")
    done
    for i in "${!sections[@]}"; do
        [ "${sections[$i]}" != "${sections[$i]%%:*}:" ] || unset "sections[$i]"
    done
    printf '%s\n' "${sections[@]}" > "$file" || die "cannot write $file"
}
