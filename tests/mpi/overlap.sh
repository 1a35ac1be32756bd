#!/usr/bin/env bash
# The overlapped, bucketed allreduce (small buckets, so there are several)
# and the blocking one make the same updates to float tolerance on 3 ranks,
# and both report their exposed communication time.
. "$(dirname "$0")/lib.sh"
cfg="$DT_SOURCE/configs/fashion_mnist_mlp.yaml"
sets=(--set train.steps=30 --set train.log_every=1 --set comm.bucket_kb=64)
for ov in true false; do
    rc=$(run 3 "$WORK/$ov" "${sets[@]}" --set comm.overlap=$ov "$cfg")
    [ "$rc" -eq 0 ] || { cat "$WORK/$ov.log"; die "overlap=$ov exited $rc"; }
    comm=$(json_field "$WORK/$ov/summary.json" communication)
    awk -v c="$comm" 'BEGIN { exit !(c > 0) }' || die "overlap=$ov: no communication time ($comm)"
    echo "overlap=$ov: exposed communication $comm s"
done
grep -q "17 buckets of up to 64 KiB" "$WORK/true.log" || { grep bucket "$WORK/true.log"; die "expected 17 buckets"; }
compare_losses "$WORK/true/metrics.jsonl" "$WORK/false/metrics.jsonl" 1e-5 \
    || die "overlapped and blocking allreduce disagree"
echo "PASS"
