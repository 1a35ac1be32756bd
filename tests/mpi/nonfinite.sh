#!/usr/bin/env bash
# A run that diverges on purpose (a huge learning rate) on 2 ranks:
# nonfinite: abort ends every rank with status 4 and one message naming the
# update; nonfinite: skip skips (and counts, and logs) every non-finite
# update and completes.
. "$(dirname "$0")/lib.sh"
small_config "$WORK/c.yaml" 40 "scheduler: {name: constant}"
sets=(--set optimizer.name=sgd --set optimizer.lr=1e30)

rc=$(run 2 "$WORK/abort" "${sets[@]}" --set optimizer.nonfinite=abort "$WORK/c.yaml")
[ "$rc" -eq 4 ] || { cat "$WORK/abort.log"; die "abort: exit $rc, expected 4"; }
grep -qE '^dtrain: step [0-9]+: non-finite gradient' "$WORK/abort.log" || die "abort: no message naming the step"
[ "$(grep -c '^dtrain: ' "$WORK/abort.log")" -eq 1 ] || die "abort: expected one message"
[ ! -e "$WORK/abort/summary.json" ] || die "abort: summary.json written"

rc=$(run 2 "$WORK/skip" "${sets[@]}" --set optimizer.nonfinite=skip "$WORK/c.yaml")
[ "$rc" -eq 0 ] || { cat "$WORK/skip.log"; die "skip: exit $rc"; }
skipped=$(json_field "$WORK/skip/summary.json" skipped_updates)
records=$(grep -c '"kind":"skip"' "$WORK/skip/metrics.jsonl")
[ "$skipped" -gt 0 ] || die "skip: no update was skipped"
[ "$skipped" -eq "$records" ] || die "skip: $skipped skipped but $records skip records"
[ "$(json_field "$WORK/skip/summary.json" steps)" = 40 ] || die "skip: the run did not complete"
grep -q "update skipped" "$WORK/skip.log" || die "skip: not reported on the terminal"
echo "aborted with status 4; skip mode skipped $skipped of 40 updates"
echo "PASS"
