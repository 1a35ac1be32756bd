# lib.sh - helpers of the MPI test scripts (sourced); the general ones are
# in tests/lib.sh.
# Environment: DTRAIN, MPIEXEC, DT_TEST_DATA, DT_SOURCE (the source tree);
# DTRAIN_BLAS_REEXEC (force or 0) when ctest runs a test on both BLAS paths.
. "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
new_work_dir dtrain-mpi

# run NP OUT_DIR ARGS... : dtrain on NP ranks, output in OUT_DIR, log in OUT_DIR.log
run() {
    local np=$1 out=$2
    shift 2
    # shellcheck disable=SC2086
    timeout -k 5 600 $MPIEXEC -np "$np" "$DTRAIN" --set "run.out_dir=$out" "$@" > "$out.log" 2>&1
    local rc=$?
    echo "$rc"
}

# start_run NP OUT_DIR ARGS... : as run, but in the background; LAUNCHER is
# mpiexec's pid. A launcher still running when the test ends is stopped.
start_run() {
    local np=$1 out=$2
    shift 2
    # shellcheck disable=SC2086
    $MPIEXEC -np "$np" "$DTRAIN" --set "run.out_dir=$out" "$@" > "$out.log" 2>&1 &
    LAUNCHER=$!
    DT_AT_EXIT='kill -TERM "$LAUNCHER" 2>/dev/null'
}

# job_ranks NP : RANKS = the pids of the job LAUNCHER started, found by name
# as users and cluster scripts find them (pgrep -x dtrain); fails unless NP
job_ranks() {
    RANKS=$(pgrep -P "$LAUNCHER" -x dtrain)
    [ "$(echo "$RANKS" | wc -w)" -eq "$1" ] && return 0
    ps -o pid,comm,args --ppid "$LAUNCHER"
    die "expected $1 ranks named dtrain under mpirun, found: $RANKS"
}

# launcher_ends_within SECONDS : mpiexec (LAUNCHER) ends within SECONDS
launcher_ends_within() {
    local deadline=$((SECONDS + $1))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$LAUNCHER" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# gone_within SECONDS PID... : every PID ends (or is a zombie waiting for its
# reaper) within SECONDS; if not, all of them are killed and it returns 1
gone_within() {
    local limit=$1 start=$SECONDS pid state
    shift
    for pid in "$@"; do
        while :; do
            state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
            [ -z "$state" ] || [ "$state" = Z ] && break
            if [ $((SECONDS - start)) -ge "$limit" ]; then
                echo "pid $pid still running (state $state) after $limit s"
                kill -KILL "$@" 2>/dev/null
                return 1
            fi
            sleep 0.1
        done
    done
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

# newest_checkpoint_step DIR: the step of the newest ckpt-*.dtck in DIR
newest_checkpoint_step() {
    find "$1" -maxdepth 1 -name 'ckpt-*.dtck' -printf '%f\n' 2>/dev/null |
        sed -n 's/^ckpt-0*\([0-9][0-9]*\)\.dtck$/\1/p' | sort -n | tail -n 1
}

# check_resumed LOG RECORDS FROM LAST : the run of LOG says it resumed from
# the checkpoint of step FROM, and its train records (RECORDS: the lines of
# metrics.jsonl that this run wrote) are exactly the updates FROM+1 .. LAST.
# A run that ignored --resume would start again at step 1.
check_resumed() {
    local log=$1 records=$2 from=$3 last=$4 got
    grep -q "^resumed from .*ckpt-0*$from\.dtck: step $from," "$log" \
        || { tail -n 30 "$log"; die "$log: no 'resumed from ...ckpt-$from.dtck: step $from' line"; }
    got=$(train_losses "$records" | awk '{ print $1 }' | paste -sd' ')
    [ "$got" = "$(seq -s' ' $((from + 1)) "$last")" ] \
        || die "$records: the resumed run logged updates $(echo "$got" | cut -d' ' -f1)..$(echo "$got" | awk '{print $NF}') ($(echo "$got" | wc -w) of them), expected $((from + 1))..$last"
}

# resume_latest NP OUT_DIR FROM LAST ARGS... : dtrain --resume latest on NP
# ranks into the existing OUT_DIR; it must succeed, resume from the
# checkpoint of step FROM and train exactly updates FROM+1 .. LAST.
resume_latest() {
    local np=$1 out=$2 from=$3 last=$4 before rc
    shift 4
    before=$(wc -l < "$out/metrics.jsonl")
    rc=$(run "$np" "$out" --resume latest "$@")
    [ "$rc" -eq 0 ] || { tail -n 30 "$out.log"; die "the run resumed on $np ranks exited $rc"; }
    tail -n +$((before + 1)) "$out/metrics.jsonl" > "$out.resumed.jsonl"
    check_resumed "$out.log" "$out.resumed.jsonl" "$from" "$last"
}

# best_blas_core: the OpenBLAS core dtrain re-execs into when OpenBLAS fell
# back to a generic one, derived here from /proc/cpuinfo: SkylakeX with
# AVX-512 F, BW, VL and DQ; Haswell with AVX2 and FMA; else nothing.
best_blas_core() {
    local flags
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    has() { [[ $flags == *" $1 "* ]]; }
    if has avx512f && has avx512bw && has avx512vl && has avx512dq; then echo SkylakeX
    elif has avx2 && has fma; then echo Haswell
    fi
}

# better_core CORE BEST: BEST if OpenBLAS core CORE uses an older instruction
# set than BEST (SSE fallback < AVX < AVX2 < AVX-512), else nothing: dtrain's
# rule for its re-exec (runtime.c), written out again here to check it.
better_core() {
    level() {
        case $1 in
        Prescott | Core2 | Nehalem | Penryn | Dunnington | Atom | Barcelona | Unknown) echo 0 ;;
        Sandybridge | Bulldozer | Piledriver | Steamroller) echo 1 ;;
        Haswell | Zen | Excavator) echo 2 ;;
        SkylakeX | Cooperlake | SapphireRapids) echo 3 ;;
        *) echo -1 ;;
        esac
    }
    local have can
    have=$(level "$1")
    can=$(level "${2:-none}")
    [ "$have" -ge 0 ] && [ "$can" -gt "$have" ] && echo "$2"
    return 0
}
