#!/usr/bin/env bash
# The default config for 20 updates, logging every update, on 1, 2, 3 and 4
# ranks: the loss of every update must agree to a relative 1e-5 (the same
# samples in every update, only the summation order differs; SPEC "Data
# order"). Then 2 ranks twice: a bit-identical param_checksum.
. "$(dirname "$0")/lib.sh"
cfg="$DT_SOURCE/configs/fashion_mnist_mlp.yaml"
sets=(--set train.steps=20 --set train.log_every=1 --set comm.check_replicas_every=1)
for np in 1 2 3 4; do
    rc=$(run "$np" "$WORK/np$np" "${sets[@]}" "$cfg")
    [ "$rc" -eq 0 ] || { cat "$WORK/np$np.log"; die "np $np exited $rc"; }
    train_losses "$WORK/np$np/metrics.jsonl" > "$WORK/np$np.losses"
    n=$(wc -l < "$WORK/np$np.losses")
    [ "$n" -eq 20 ] || die "np $np logged $n updates, expected 20"
done
for np in 2 3 4; do
    paste "$WORK/np1.losses" "$WORK/np$np.losses" | awk -v np="$np" '
        { if ($1 != $3) { print "step mismatch " $1 " " $3; bad = 1; exit }
          d = $2 - $4; if (d < 0) d = -d; r = d / ($2 < 0 ? -$2 : $2)
          if (r > worst) worst = r
          if (r > 1e-5) { printf "np %d step %d: loss %s vs %s (rel %.2e)\n", np, $1, $4, $2, r; bad = 1 } }
        END { printf "np %d vs np 1: worst relative loss difference %.2e\n", np, worst; exit bad }' \
        || die "losses differ between 1 and $np ranks"
done
# The losses must actually change (a frozen model would pass the above).
first=$(head -n 1 "$WORK/np1.losses" | cut -d' ' -f2)
last=$(tail -n 1 "$WORK/np1.losses" | cut -d' ' -f2)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a * 0.8) }' || die "loss did not fall: $first -> $last"

rc=$(run 2 "$WORK/again" "${sets[@]}" "$cfg")
[ "$rc" -eq 0 ] || die "repeat run exited $rc"
a=$(json_field "$WORK/np2/summary.json" param_checksum)
b=$(json_field "$WORK/again/summary.json" param_checksum)
[ -n "$a" ] && [ "$a" = "$b" ] || die "param_checksum differs between identical 2-rank runs: $a vs $b"
echo "param_checksum $a (2 ranks, twice)"
echo "PASS"
