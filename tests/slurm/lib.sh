# lib.sh - helpers of the Slurm test scripts (sourced); the general ones are
# in tests/lib.sh.
# Environment (from slurm_tests.cmake): DTRAIN (the binary), DT_SOURCE (the
# source tree), DT_TEST_DATA (synthetic IDX sets), DT_SLURM_STATE (the state
# dir of the cluster that the slurm_cluster fixture started), DT_SLURM_WORK
# (the parent of the tests' work folders).
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
[ "$(id -u)" -eq 0 ] || skip "the local Slurm cluster needs root"
[ -s "$DT_SLURM_STATE/env.sh" ] || die "no cluster in $DT_SLURM_STATE (did slurm_cluster_start fail?)"
. "$DT_SLURM_STATE/env.sh"
SBATCH_SCRIPT=$DT_SOURCE/launch/dtrain.sbatch
export DTRAIN_BIN=$DTRAIN
# Sanitizer builds: no leak check inside the jobs (sbatch exports this
# environment). On a requeue the batch script itself runs `dtrain
# --print-config`, an MPI singleton outside srun, and LeakSanitizer's
# tracer crashes at its exit ("Tracer caught signal 11"), after a complete
# output: exit 1, so the job cannot find its checkpoint and starts over
# (CI, 2026-12-02, both slurm_preempt tests of build-asan). Every other
# test of that build still checks for leaks; the address and UB checks stay
# on here.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"

new_work_dir dtrain-slurm "${DT_SLURM_WORK:-${TMPDIR:-/tmp}}"
JOBS=()
DT_AT_EXIT='[ ${#JOBS[@]} -eq 0 ] || scancel "${JOBS[@]}" 2>/dev/null'

# slurm_config FILE OUT_DIR [EXTRA YAML LINES...]: the small MLP on the
# synthetic data (tests/lib.sh small_config) with momentum SGD, logging every
# 10 updates, output to OUT_DIR (launch/dtrain.sbatch reads it from there),
# ${STEPS:-200} updates, checkpoints as dtrain's defaults have them.
slurm_config() {
    local file=$1 out=$2
    shift 2
    small_config "$file" "${STEPS:-200}" "run: {seed: 0, out_dir: $out}" \
        "model: {layers: [{dense: 64}, relu, {dense: 10}]}" \
        "train: {steps: ${STEPS:-200}, global_batch: 32, log_every: 10}" \
        "optimizer: {name: momentum, lr: 0.05}" "checkpoint:" "$@"
}

# submit SBATCH_OPTIONS... -- DTRAIN_ARGS... : prints the job id
submit() {
    local opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    shift
    local id
    id=$(cd "$WORK" && timeout 30 sbatch --parsable --chdir="$WORK" --time=10 --signal=B:USR1@60 \
         "${opts[@]}" "$SBATCH_SCRIPT" "$@") || die "sbatch failed"
    id=${id%%;*}
    JOBS+=("$id")
    echo "$id"
}

# job_field ID KEY: a field of `scontrol show job`
job_field() { scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }

# wait_job ID TIMEOUT_S: wait for a final state; prints it
wait_job() {
    local id=$1 end=$(( $(date +%s) + $2 )) st
    while :; do
        st=$(job_field "$id" JobState)
        case $st in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | PREEMPTED | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE)
            echo "$st"; return 0 ;;
        esac
        [ "$(date +%s)" -lt $end ] || { echo "WAIT_TIMEOUT($st)"; return 1; }
        sleep 0.2
    done
}

# show_job ID: what to look at when a job went wrong
show_job() {
    echo "---- scontrol show job $1"; scontrol show job "$1" 2>&1 | head -n 40
    echo "---- job output"; cat "$WORK/dtrain-$1.out" 2>/dev/null
}
