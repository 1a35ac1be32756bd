#!/usr/bin/env bash
# Storage faults on 2 ranks: a disk that fills up during a checkpoint, while
# writing metrics.jsonl and while writing summary.json, and a run.out_dir
# that cannot be created or written. Each must end every rank with exit 1
# ("anything else": I/O on out_dir or the checkpoint folder), one clear
# "dtrain: FILE: ...: CAUSE" line, and no partial or temporary file; after a
# failed checkpoint the previous one is still `latest` and resumes.
#
#   storage_faults.sh inject   faults injected by the preload library
#                              $DT_FAULT_LIB (tests/tools/fault_inject.c):
#                              runs anywhere
#   storage_faults.sh tmpfs    a real full disk: a small tmpfs as run.out_dir
#                              (needs root and mount; exit 77 = SKIP otherwise)
. "$(dirname "$0")/lib.sh"
mode=${1:-inject}

# go NP OUT LOG [FAULT SETTINGS as VAR=VALUE...] -- ARGS... : one run, its
# exit status on stdout. The fault settings apply to this run only.
go() {
    local np=$1 out=$2 log=$3
    shift 3
    local env=()
    while [ "$1" != "--" ]; do env+=("$1"); shift; done
    shift
    if [ ${#env[@]} -gt 0 ]; then
        # ASan wants to be the first library; the preloaded one is tiny and
        # plain, so that order does not matter here
        env+=("LD_PRELOAD=$DT_FAULT_LIB" "ASAN_OPTIONS=${ASAN_OPTIONS:-}:verify_asan_link_order=0")
    fi
    # shellcheck disable=SC2086
    env "${env[@]}" timeout -k 5 600 $MPIEXEC -np "$np" "$DTRAIN" --set "run.out_dir=$out" "$@" \
        > "$log" 2>&1
    echo $?
}

# expect_fail RC LOG TEXT... : exit 1, one dtrain: line holding every TEXT
expect_fail() {
    local rc=$1 log=$2
    shift 2
    [ "$rc" = 1 ] || { ls -la "$WORK"; cat "$log"; die "exit '$rc', expected 1"; }
    [ "$(grep -c '^dtrain: ' "$log")" -eq 1 ] || { cat "$log"; die "not one dtrain: line"; }
    local line
    line=$(grep '^dtrain: ' "$log")
    for t in "$@"; do
        case $line in *"$t"*) ;; *) cat "$log"; die "message lacks \"$t\": $line" ;; esac
    done
    echo "ok: $line"
}

# no_temp DIR : no temporary file anywhere under DIR
no_temp() {
    local left
    left=$(find "$1" -name '*.tmp*' 2>/dev/null)
    [ -z "$left" ] || die "temporary files left: $left"
}

# whole_lines FILE : every line of a metrics.jsonl is a complete record
whole_lines() {
    [ ! -s "$1" ] || [ "$(tail -c 1 "$1" | od -An -c | tr -d ' ')" = '\n' ] || die "$1: last line cut"
    ! grep -vq '^{"kind":"[a-z]*",.*}$' "$1" || die "$1: a partial record: $(grep -v '^{.*}$' "$1" | head -n 1)"
}

# resumes_from OUT STEP : --resume latest of the run in OUT continues after STEP
resumes_from() {
    local out=$1 step=$2 rc
    rc=$(go 2 "$out" "$out.resume.log" -- --resume latest "$WORK/c.yaml")
    [ "$rc" -eq 0 ] || { cat "$out.resume.log"; die "resume exited $rc"; }
    grep -q "resumed from .*ckpt-0*$step.dtck: step $step," "$out.resume.log" ||
        { cat "$out.resume.log"; die "did not resume from step $step"; }
    echo "ok: $(grep 'resumed from' "$out.resume.log")"
}

ckpt_size=$((88 + 4 * 38170 * 3 + 4)) # the small MLP under Adam: 3 arenas
small_config "$WORK/c.yaml" 120        # checkpoints at 50, 100, 120

if [ "$mode" = tmpfs ]; then
    mnt="$WORK/mnt"
    mkdir "$mnt"
    [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=700k tmpfs "$mnt" 2>/dev/null ||
        { echo "SKIP: cannot mount a tmpfs here (needs root and mount)"; exit 77; }
    trap 'umount "$mnt" 2>/dev/null; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT
    # one checkpoint fits in 700 KiB, a second one does not
    out="$mnt/run"
    rc=$(go 2 "$out" "$WORK/full.log" -- "$WORK/c.yaml")
    expect_fail "$rc" "$WORK/full.log" "$out/checkpoints/ckpt-000000000100.dtck" \
        "No space left on device" "temporary file"
    no_temp "$out"
    [ "$(cat "$out/checkpoints/latest")" = ckpt-000000000050.dtck ] || die "latest moved"
    [ ! -e "$out/checkpoints/ckpt-000000000100.dtck" ] || die "a partial checkpoint"
    whole_lines "$out/metrics.jsonl"
    # the previous checkpoint loads (resumed on a disk with room)
    cp -a "$out" "$WORK/copy"
    resumes_from "$WORK/copy" 50
    echo PASS
    exit 0
fi

[ -n "${DT_FAULT_LIB:-}" ] && [ -f "$DT_FAULT_LIB" ] || die "DT_FAULT_LIB not built: ${DT_FAULT_LIB:-unset}"

# 1. Disk full during the second checkpoint (after 1.3 checkpoints' bytes).
out="$WORK/ckpt"
rc=$(go 2 "$out" "$out.log" DT_FAULT_PATH="$out" DT_FAULT_NAME=ckpt- \
        DT_FAULT_AFTER=$((ckpt_size * 13 / 10)) -- "$WORK/c.yaml")
expect_fail "$rc" "$out.log" "$out/checkpoints/ckpt-000000000100.dtck: cannot write" \
    "No space left on device" "temporary file"
no_temp "$out"
[ "$(cat "$out/checkpoints/latest")" = ckpt-000000000050.dtck ] || die "latest moved"
[ "$(ls "$out/checkpoints")" = "$(printf 'ckpt-000000000050.dtck\nlatest')" ] ||
    die "checkpoint folder: $(ls "$out/checkpoints")"
resumes_from "$out" 50

# 2. Disk full while writing metrics.jsonl (midway through a record).
out="$WORK/metrics"
rc=$(go 2 "$out" "$out.log" DT_FAULT_PATH="$out" DT_FAULT_NAME=metrics.jsonl \
        DT_FAULT_AFTER=3050 -- "$WORK/c.yaml")
expect_fail "$rc" "$out.log" "$out/metrics.jsonl: cannot write: No space left on device"
whole_lines "$out/metrics.jsonl"
[ "$(wc -c < "$out/metrics.jsonl")" -le 3050 ] || die "metrics.jsonl grew past the full disk"
[ "$(wc -l < "$out/metrics.jsonl")" -ge 20 ] || die "metrics.jsonl lost its complete records"
[ ! -e "$out/summary.json" ] || die "a summary.json after a failed metrics.jsonl"
no_temp "$out"

# 3. Disk full while writing summary.json; and its fsync failing.
for fault in "write ENOSPC No space left on device" "fsync EIO Input/output error"; do
    read -r op errname cause <<< "$fault"
    out="$WORK/summary_$op"
    rc=$(go 2 "$out" "$out.log" DT_FAULT_PATH="$out" DT_FAULT_NAME=summary.json \
            DT_FAULT_OP="$op" DT_FAULT_ERRNO="$errname" -- "$WORK/c.yaml")
    expect_fail "$rc" "$out.log" "$out/summary.json: cannot $op" "$cause" "temporary file"
    [ ! -e "$out/summary.json" ] || die "summary.json written"
    no_temp "$out"
    whole_lines "$out/metrics.jsonl"
done

# 4. An out_dir that cannot be created: a regular file in the way.
echo x > "$WORK/plain"
out="$WORK/plain/sub/run"
rc=$(go 2 "$out" "$WORK/plain.log" -- "$WORK/c.yaml")
expect_fail "$rc" "$WORK/plain.log" "cannot create run.out_dir $out: $WORK/plain: Not a directory"
[ "$(cat "$WORK/plain")" = x ] || die "the file in the way was changed"

# 5. An out_dir that cannot be written (root ignores permission bits: the
#    preload library answers what a read-only folder does; unprivileged,
#    chmod does it for real).
out="$WORK/ro"
mkdir "$out"
rc=$(go 2 "$out" "$out.log" DT_FAULT_PATH="$out" DT_FAULT_OP=open DT_FAULT_ERRNO=EACCES -- "$WORK/c.yaml")
expect_fail "$rc" "$out.log" "$out/config.resolved.yaml: cannot create" "Permission denied"
[ -z "$(ls -A "$out")" ] || die "files in the unwritable out_dir: $(ls -A "$out")"
if [ "$(id -u)" -ne 0 ]; then
    chmod 555 "$out"
    rc=$(go 2 "$out" "$out.log" -- "$WORK/c.yaml")
    chmod 755 "$out"
    expect_fail "$rc" "$out.log" "$out/config.resolved.yaml: cannot create" "Permission denied"
fi
echo PASS
