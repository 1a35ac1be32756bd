#!/usr/bin/env bash
# The timeline (run.trace): 2 ranks, 3 traced updates of the default MLP
# with small buckets. One JSON file that parses, a track per rank, exactly
# the traced updates, nothing dropped, per-layer backward and per-bucket
# spans; tracing allocates nothing in the loop, and a run without
# run.trace writes no trace.
. "$(dirname "$0")/lib.sh"
cfg="$DT_SOURCE/configs/fashion_mnist_mlp.yaml"
sets=(--set train.steps=10 --set comm.bucket_kb=256 --set runtime.threads=1)
rc=$(run 2 "$WORK/t" "${sets[@]}" --set run.trace="$WORK/t/trace.json" --set run.trace_steps=3 "$cfg")
[ "$rc" -eq 0 ] || { cat "$WORK/t.log"; die "traced run exited $rc"; }
[ -s "$WORK/t/trace.json" ] || die "no trace written"
ls -a "$WORK/t" | grep -q '\.tmp' && die "a temporary file was left"
/usr/bin/python3 "$DT_SOURCE/launch/trace_check" --json "$WORK/t/trace.json" > "$WORK/check.json" \
    || die "trace_check rejected the trace"
/usr/bin/python3 - "$WORK/check.json" "$WORK/t/trace.json" <<'PY' || die "trace content"
import json, sys
c = json.load(open(sys.argv[1]))
t = json.load(open(sys.argv[2]))
assert c["ranks"] == [0, 1], c["ranks"]
assert c["dropped"] == 0, c["dropped"]
for r in ("0", "1"):
    assert c["per_rank"][r]["steps"] == [1, 2, 3], c["per_rank"][r]["steps"]
ev = [e for e in t["traceEvents"] if e.get("ph") == "X"]
names = {e["name"].split(" ")[0] for e in ev}
for want in ("update", "data", "forward", "backward", "bucket", "optimizer"):
    assert want in names, (want, names)
# 3 dense layers, each reported as its bias and then its weights in blocks
# of rows (multiples of 48, up to 64k floats): 784x256 in 6 (48 rows),
# 256x256 in 2 (240 rows), 256x10 in 1: 12 backward spans per update
back = [e for e in ev if e["name"].startswith("backward") and e["pid"] == 0]
assert len(back) == 3 * 12, len(back)
buckets = [e for e in ev if e["name"].startswith("bucket") and e["pid"] == 0]
params = (784 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10)
per_bucket = 256 * 1024 // 4
assert len(buckets) == 3 * -(-params // per_bucket), len(buckets)
print("trace ok:", len(ev), "spans")
PY
[ "$(json_field "$WORK/t/summary.json" train_loop_allocations)" = 0 ] || die "tracing allocated in the loop"
rc=$(run 2 "$WORK/plain" "${sets[@]}" "$cfg")
[ "$rc" -eq 0 ] || die "plain run exited $rc"
grep -q "trace:" "$WORK/plain.log" && die "a run without run.trace reports a trace"
echo "PASS"
