#!/usr/bin/env bash
# Damaged and foreign checkpoints: truncated, bit-flipped, written for
# another model or another configuration. Each is reported with a clear
# message (exit 3 when named with --resume PATH); --resume latest falls back
# to the previous file and completes; nothing usable is exit 3.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 150
rc=$(run 2 "$WORK/run" "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/run.log"; die "first run exited $rc"; }
ck="$WORK/run/checkpoints"
ls "$ck"
[ -f "$ck/ckpt-000000000150.dtck" ] && [ -f "$ck/ckpt-000000000100.dtck" ] || die "checkpoints missing"

expect() { # expect RC TEXT LOG
    [ "$1" -eq "$4" ] || { cat "$3"; die "exit $4, expected $1"; }
    grep -qF -- "$2" "$3" || { cat "$3"; die "log lacks: $2"; }
    [ "$(grep -c '^dtrain: ' "$3")" -ge 1 ] || die "no dtrain: line"
}

cp "$ck/ckpt-000000000150.dtck" "$WORK/good.dtck"
head -c 1000 "$WORK/good.dtck" > "$WORK/truncated.dtck"
cp "$WORK/good.dtck" "$WORK/flipped.dtck"
printf '\x55' | dd of="$WORK/flipped.dtck" bs=1 seek=5000 conv=notrunc status=none
for f in truncated flipped; do
    rc=$(run 2 "$WORK/r_$f" --resume "$WORK/$f.dtck" "$WORK/c.yaml")
    expect 3 "$WORK/$f.dtck" "$WORK/r_$f.log" "$rc"
done
# the message names the damage (the file names contain the words too)
grep -qF "truncated.dtck: truncated: 1000 bytes" "$WORK/r_truncated.log" \
    || { cat "$WORK/r_truncated.log"; die "truncation not named"; }
grep -qF "flipped.dtck: checksum mismatch" "$WORK/r_flipped.log" \
    || { cat "$WORK/r_flipped.log"; die "checksum mismatch not named"; }

rc=$(run 2 "$WORK/r_model" --set 'model.layers=[{dense: 40}, relu, {dense: 10}]' \
         --resume "$WORK/good.dtck" "$WORK/c.yaml")
expect 3 "another model" "$WORK/r_model.log" "$rc"
rc=$(run 2 "$WORK/r_cfg" --set optimizer.lr=0.002 --resume "$WORK/good.dtck" "$WORK/c.yaml")
expect 3 "another configuration" "$WORK/r_cfg.log" "$rc"

# The newest file damaged: latest falls back to the previous one.
printf '\x55' | dd of="$ck/ckpt-000000000150.dtck" bs=1 seek=3000 conv=notrunc status=none
small_config "$WORK/c200.yaml" 200
resume_latest 2 "$WORK/run" 100 200 "$WORK/c200.yaml"
grep -q "warning: .*ckpt-000000000150.dtck" "$WORK/run.log" || { cat "$WORK/run.log"; die "damaged newest not reported"; }

# Nothing usable at all.
mkdir -p "$WORK/empty/checkpoints"
rc=$(run 2 "$WORK/empty" --resume latest "$WORK/c.yaml")
expect 3 "no usable checkpoint" "$WORK/empty.log" "$rc"
echo "PASS"
