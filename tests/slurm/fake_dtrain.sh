#!/usr/bin/env bash
# fake_dtrain.sh - stands in for dtrain to test launch/dtrain.sbatch's
# signal/requeue/resume logic on its own. State under $FAKE_OUT.
#   --print-config ...   prints a config whose checkpoint.dir is $FAKE_OUT/ckpt
#   --resume latest ...  records the resume (rank 0), exits 0
#   otherwise            runs until SIGUSR1 (then: checkpoint, exit 5) or 60 s (exit 0)
rank=${SLURM_PROCID:-${OMPI_COMM_WORLD_RANK:-0}}
case " $* " in
*" --print-config "*)
    printf 'run:\n  out_dir: "%s"\ncheckpoint:\n  every_epochs: 1\n  dir: "%s/ckpt"\n' "$FAKE_OUT" "$FAKE_OUT"
    exit 0 ;;
*" --resume latest "*)
    [ -e "$FAKE_OUT/ckpt/latest" ] || exit 3
    [ "$rank" = 0 ] && echo "resumed ${SLURM_RESTART_COUNT:-0}" >>"$FAKE_OUT/resumed"
    exit 0 ;;
esac
# Like dtrain, every rank leaves only once all have seen the stop (dtrain
# agrees on it through the gradient allreduce and the checkpoint's verdict):
# here, once every rank's line is in the signals file (10 s at most).
stop() {
    if [ "$rank" = 0 ]; then mkdir -p "$FAKE_OUT/ckpt"; touch "$FAKE_OUT/ckpt/latest"; fi
    echo "rank $rank: SIGUSR1, checkpoint written" >>"$FAKE_OUT/signals"
    local ranks=${SLURM_NTASKS:-${OMPI_COMM_WORLD_SIZE:-1}}
    for _ in $(seq 100); do
        [ "$(wc -l <"$FAKE_OUT/signals")" -ge "$ranks" ] && break
        sleep 0.1
    done
    exit 5
}
trap stop USR1
touch "$FAKE_OUT/ready.$rank" # the trap is set: the test may signal now
[ "$rank" = 0 ] && touch "$FAKE_OUT/running"
for _ in $(seq 600); do sleep 0.1; done
exit 0
