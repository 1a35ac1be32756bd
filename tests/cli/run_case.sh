#!/usr/bin/env bash
# run_case.sh NP CASE.yaml - run one CLI case of dtrain and check what it did.
#
# Environment: DTRAIN (the binary), MPIEXEC (launcher and its options, split
# on spaces), DT_TEST_DATA (test data sets made by make_idx).
# The case file's leading comments say what to expect:
#   # expect-exit: N             exit status (required)
#   # expect-message: TEXT       must appear in stderr (any number of lines)
#   # expect-stdout: TEXT        must appear in stdout
#   # expect-stdout-lines: N     stdout has exactly N lines (rank 0 alone printed)
#   # reject-message: TEXT       must not appear in stderr (e.g. getopt's own words)
#   # args: ARGS                 command line instead of the case file alone;
#                                @CASE@ stands for the case file
# @DATA@ and @OUT@ in the file become the data folder and a fresh run folder.
# Checked as well: no hang (60 s), exactly one "dtrain:" error line when the
# exit is non-zero, no sanitizer report or crash, and no run folder left
# behind by a failed run or by --check / --print-config (which write nothing,
# whatever their exit status). dtrain runs in the test's own fresh folder,
# and nothing but the run folder may appear there.
. "$(dirname "$0")/../lib.sh"
np=$1
src=$2
name=$(basename "$src" .yaml)
new_work_dir dtrain-cli
work=$WORK
out="$work/out"
case_file="$work/$name.yaml"
sed -e "s|@DATA@|${DT_TEST_DATA}|g" -e "s|@OUT@|$out|g" "$src" > "$case_file"

expect_exit=$(sed -n 's/^# expect-exit: *//p' "$src" | head -n 1)
args_line=$(sed -n 's/^# args: *//p' "$src" | head -n 1)
[ -n "$expect_exit" ] || { echo "FAIL $name: no '# expect-exit:' line"; exit 1; }

if [ -n "$args_line" ]; then
    args_line=${args_line//@CASE@/$case_file}
    args_line=${args_line//@OUT@/$out}
    eval "set -- $args_line"
else
    set -- "$case_file"
fi

# shellcheck disable=SC2086
timeout -k 5 60 $MPIEXEC -np "$np" "$DTRAIN" "$@" > "$work/stdout" 2> "$work/stderr"
rc=$?

fail() {
    echo "FAIL $name (np $np): $*"
    echo "---- stdout"; head -c 3000 "$work/stdout"
    echo "---- stderr"; head -c 3000 "$work/stderr"
    exit 1
}

[ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && fail "timed out (hang?)"
[ "$rc" -eq "$expect_exit" ] || fail "exit status $rc, expected $expect_exit"
while IFS= read -r msg; do
    [ -n "$msg" ] || continue
    msg=${msg//@DATA@/$DT_TEST_DATA}
    grep -qF -- "$msg" "$work/stderr" || fail "stderr lacks: $msg"
done < <(sed -n 's/^# expect-message: *//p' "$src")
while IFS= read -r msg; do
    [ -n "$msg" ] || continue
    grep -qF -- "$msg" "$work/stdout" || fail "stdout lacks: $msg"
done < <(sed -n 's/^# expect-stdout: *//p' "$src")
while IFS= read -r msg; do
    [ -n "$msg" ] || continue
    grep -qF -- "$msg" "$work/stderr" && fail "stderr has: $msg"
done < <(sed -n 's/^# reject-message: *//p' "$src")
expect_lines=$(sed -n 's/^# expect-stdout-lines: *//p' "$src" | head -n 1)
if [ -n "$expect_lines" ]; then
    got_lines=$(wc -l < "$work/stdout")
    [ "$got_lines" -eq "$expect_lines" ] || fail "stdout has $got_lines lines, expected $expect_lines"
fi
if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|signal [0-9]+|core dumped|internal error' "$work/stderr"; then
    fail "crash or sanitizer report"
fi
writes_nothing=0
for arg in "$@"; do
    case $arg in --check | --print-config) writes_nothing=1 ;; esac
done
if [ "$expect_exit" -ne 0 ]; then
    lines=$(grep -c '^dtrain: ' "$work/stderr")
    [ "$lines" -eq 1 ] || fail "expected one 'dtrain:' error line, got $lines"
    writes_nothing=1
fi
if [ "$writes_nothing" -eq 1 ] && [ -e "$out" ]; then
    fail "the run left $out behind: $(ls -A "$out" | tr '\n' ' ')"
fi
stray=$(ls -A "$work" | grep -vxF -e "$name.yaml" -e stdout -e stderr -e out)
[ -z "$stray" ] || fail "dtrain wrote into its working folder: $(echo $stray)"
echo "PASS $name (np $np)"
exit 0
