#!/usr/bin/env bash
# reproducible.sh CASE ... : comm.reproducible, on real Fashion-MNIST runs
# (a 1024-sample training set, 1300 test samples: 8 updates per epoch of
# global batch 128, so 128 leaves of 1 sample; 6 evaluation chunks).
#
#   same CONFIG "SPEC..." [--set ...]  every SPEC (NP, NP:UPDATE or
#       NP:UPDATE:THREADS, e.g. "1:replicated:2 2 4:sharded") trains 12
#       updates; the logged train losses, every eval line and param_checksum
#       must be the same text on all of them. THREADS sets runtime.threads
#       (default: dtrain's choice), so that 1 rank with 2 BLAS threads is
#       checked against 2 ranks with 1 each.
#   resume CONFIG  stopped at update 10 on 4 ranks, resumed on 2 ranks to
#       24, both sharded (each rank holds its piece of the optimizer state:
#       rank 0 collects the pieces into the file, the resume hands them out
#       again): the uninterrupted 1-rank run's param_checksum and losses.
#   default_differs CONFIG  the default mode on 1 and 4 ranks gives two
#       param_checksums: the same-bits checks are not passing by accident.
#   refuse  3 ranks (not a power of two) and 8 ranks at global batch 12
#       (4 leaves of 3 samples) are start-up config errors (exit 2, no
#       output folder, no hang) naming the allowed world sizes; so are
#       comm.dtype bfloat16 and a short last batch (data.drop_last: false).
. "$(dirname "$0")/lib.sh"
case_name=$1
shift
data=/usr/share/datasets/fashion-mnist
[ -f "$data/train-images-idx3-ubyte.gz" ] || [ -f "$data/train-images-idx3-ubyte" ] \
    || skip "no Fashion-MNIST in $data"
base=(--set train.steps=12 --set train.log_every=1 --set train.eval_every=1
      --set data.train_limit=1024 --set data.test_limit=1300 --set comm.check_replicas_every=1
      --set comm.reproducible=true)

ok_run() { # ok_run NAME NP ARGS... : run, require exit 0
    local name=$1 np=$2 rc
    shift 2
    rc=$(run "$np" "$WORK/$name" "$@")
    [ "$rc" -eq 0 ] || { tail -n 30 "$WORK/$name.log"; die "$name ($np ranks) exited $rc"; }
}
checksum() { json_field "$WORK/$1/summary.json" param_checksum; }
# logged NAME: what must be the same bits: "step loss lr" of every train
# line, every eval line whole, and param_checksum
logged() {
    sed -n 's/^{"kind":"train","step":\([0-9]*\),"epoch":[0-9]*,"loss":\([^,]*\),.*"lr":\([^,]*\),.*/train \1 \2 \3/p' \
        "$WORK/$1/metrics.jsonl"
    grep '"kind":"eval"' "$WORK/$1/metrics.jsonl"
    echo "param_checksum $(checksum "$1")"
}

case $case_name in
same)
    cfg="$DT_SOURCE/configs/$1"
    read -r -a specs <<< "$2"
    shift 2
    first=
    for spec in "${specs[@]}"; do
        IFS=: read -r np update threads <<< "$spec"
        update=${update:-replicated} threads=${threads:-0}
        name=np$np-$update-t$threads
        ok_run "$name" "$np" "${base[@]}" --set comm.update="$update" --set runtime.threads="$threads" "$@" "$cfg"
        grep -q "gradient exchange: $update update, reproducible" "$WORK/$name.log" \
            || { grep "exchange" "$WORK/$name.log"; die "$name: the start-up line does not say '$update update, reproducible'"; }
        logged "$name" > "$WORK/$name.logged"
        [ "$(grep -c '^train ' "$WORK/$name.logged")" -eq 12 ] || die "$name: not 12 train lines"
        [ "$(grep -c '"kind":"eval"' "$WORK/$name.logged")" -eq 2 ] || die "$name: not 2 eval lines (updates 8 and 12)"
        [ "$(checksum "$name")" != "" ] || die "$name: no param_checksum"
        if [ -z "$first" ]; then
            first=$name
            # a model that did not move would pass the rest trivially
            awk '/^train / { l[++n] = $3 } END { exit !(l[n] < l[1]) }' "$WORK/$name.logged" \
                || die "$name: the loss did not fall: $(grep '^train ' "$WORK/$name.logged" | sed -n '1p;$p' | paste -sd' ')"
            continue
        fi
        diff "$WORK/$first.logged" "$WORK/$name.logged" > "$WORK/$name.diff" \
            || { head -n 12 "$WORK/$name.diff"; die "$name differs from $first"; }
        echo "$name = $first: $(wc -l < "$WORK/$name.logged") logged values, param_checksum $(checksum "$name")"
    done
    ;;
resume)
    cfg="$DT_SOURCE/configs/$1"
    rest=("${base[@]:2}") # base without its train.steps
    full=(--set train.steps=24 "${rest[@]}")
    ok_run full 1 "${full[@]}" "$cfg"
    ok_run part 4 --set train.steps=10 "${rest[@]}" --set comm.update=sharded "$cfg"
    [ "$(newest_checkpoint_step "$WORK/part/checkpoints")" = 10 ] || die "no checkpoint of update 10"
    resume_latest 2 "$WORK/part" 10 24 "${full[@]}" --set comm.update=sharded "$cfg"
    grep -q "written by 4 ranks" "$WORK/part.log" || die "the resume does not name the writer's 4 ranks"
    a=$(checksum full) b=$(checksum part)
    [ -n "$a" ] && [ "$a" = "$b" ] || die "param_checksum $b after stopping on 4 ranks and resuming on 2, $a uninterrupted on 1"
    diff <(train_losses "$WORK/full/metrics.jsonl") <(train_losses "$WORK/part/metrics.jsonl") > "$WORK/diff" \
        || { head "$WORK/diff"; die "per-update losses differ"; }
    diff <(grep '"kind":"eval"' "$WORK/full/metrics.jsonl" | grep -v '"step":10,') \
         <(grep '"kind":"eval"' "$WORK/part/metrics.jsonl" | grep -v '"step":10,') > "$WORK/diff" \
        || { head "$WORK/diff"; die "eval lines differ"; }
    echo "stopped at 10 on 4 ranks, resumed on 2 (both sharded): param_checksum $b = the 1-rank run's"
    ;;
default_differs)
    cfg="$DT_SOURCE/configs/$1"
    default=(--set train.steps=12 --set train.log_every=1 --set data.train_limit=1024
             --set data.test_limit=1300)
    ok_run d1 1 "${default[@]}" "$cfg"
    ok_run d4 4 "${default[@]}" "$cfg"
    a=$(checksum d1) b=$(checksum d4)
    [ -n "$a" ] && [ -n "$b" ] || die "no param_checksum"
    [ "$a" != "$b" ] || die "the default mode gave the same param_checksum $a on 1 and 4 ranks: the reproducible checks prove nothing"
    echo "default mode: param_checksum $a on 1 rank, $b on 4"
    ;;
refuse)
    cat > "$WORK/c.yaml" <<YAML
data: {dir: $data, train_limit: 1024, test_limit: 256}
model: {layers: [{dense: 32}, relu, {dense: 10}]}
train: {steps: 4, global_batch: 128}
optimizer: {name: momentum, lr: 0.05}
comm: {reproducible: true}
YAML
    refused() { # refused NAME NP MESSAGE ARGS...: exit 2 with MESSAGE once, no out_dir
        local name=$1 np=$2 msg=$3 rc t0=$SECONDS
        shift 3
        rc=$(run "$np" "$WORK/$name" "$@" "$WORK/c.yaml")
        [ $((SECONDS - t0)) -lt 120 ] || die "$name: took $((SECONDS - t0)) s to refuse"
        [ "$rc" -eq 2 ] || { cat "$WORK/$name.log"; die "$name: exit $rc, expected 2 (a config error)"; }
        [ "$(grep -cF -- "$msg" "$WORK/$name.log")" -eq 1 ] \
            || { cat "$WORK/$name.log"; die "$name: expected the message once: $msg"; }
        [ ! -e "$WORK/$name" ] || die "$name: the refused run created its output folder"
        echo "$name: $(grep -F -- "$msg" "$WORK/$name.log")"
    }
    refused np3 3 "c.yaml: comm.reproducible: 3 ranks cannot split 128 leaves of 1 sample into whole subtrees; use 1, 2, 4, ..., 128 ranks"
    refused np8_batch12 8 "comm.reproducible: 8 ranks cannot split 4 leaves of 3 samples into whole subtrees; use 1, 2, 4 ranks" \
        --set train.global_batch=12
    refused bf16 1 "comm.dtype: bfloat16 cannot be exact with comm.reproducible: true" --set comm.dtype=bfloat16
    refused short_batch 2 "every epoch ends with a short batch of 64 samples (1088 training samples, train.global_batch 128)" \
        --set data.train_limit=1088 --set data.drop_last=false
    # the same configuration without comm.reproducible runs on 3 ranks
    ok_run np3_default 3 --set comm.reproducible=false "$WORK/c.yaml"
    ;;
*) die "unknown case $case_name" ;;
esac
echo PASS
