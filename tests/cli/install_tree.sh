#!/usr/bin/env bash
# install_tree.sh BUILD_DIR SOURCE_DIR VERSION - `cmake --install` into a
# fresh prefix and check the tree a cluster user gets:
#  - P/bin/dtrain runs --version (alone, and under mpirun on 2 ranks, where
#    only rank 0 prints) and reports VERSION;
#  - P/share/dtrain/configs/ holds the configs, P/share/dtrain/launch/ the
#    launch scripts, executable;
#  - the installed dtrain.sbatch, started outside the source tree with P/bin
#    on PATH, finds that dtrain and trains with it (mpirun, 1 rank, 2
#    updates), and the run's summary.json carries the facts of --version.
# Environment: MPIEXEC (launcher and its options, split on spaces),
# DT_TEST_DATA (test data sets made by make_idx).
set -u
build=$1 src=$2 version=$3
work=$(mktemp -d "${TMPDIR:-/tmp}/dtrain-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix
share=$prefix/share/dtrain

fail() { echo "FAIL install: $*"; exit 1; }

cmake --install "$build" --prefix "$prefix" > "$work/install.log" 2>&1 \
    || { cat "$work/install.log"; fail "cmake --install failed"; }

[ -x "$prefix/bin/dtrain" ] || fail "no executable $prefix/bin/dtrain"
for f in configs/fashion_mnist_mlp.yaml configs/fashion_mnist_lenet.yaml; do
    [ -f "$share/$f" ] || fail "no $share/$f"
done
for f in launch/dtrain.sbatch launch/scaling launch/compare launch/slurm/start-cluster.sh \
         launch/slurm/stop-cluster.sh launch/platforms/make_platforms.py; do
    [ -x "$share/$f" ] || fail "$share/$f is missing or not executable"
done
for f in launch/slurm/lib.sh launch/platforms/cluster_16x8_fast.xml; do
    [ -f "$share/$f" ] || fail "no $share/$f"
done

# --version from the installed binary, without a launcher (MPI singleton)...
"$prefix/bin/dtrain" --version > "$work/version" 2> "$work/version.err" \
    || { cat "$work/version.err"; fail "bin/dtrain --version failed"; }
grep -qx "dtrain $version" "$work/version" || { cat "$work/version"; fail "no line 'dtrain $version'"; }
for key in git_commit blas_core mpi_library; do
    grep -qE "^$key: .+" "$work/version" || { cat "$work/version"; fail "no '$key:' line"; }
done
# a git checkout knows its commit
if [ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$src" && pwd -P)" ]; then
    grep -qx "git_commit: unknown" "$work/version" && fail "git_commit unknown in a git checkout"
fi
# ...and under mpirun on 2 ranks: rank 0 alone prints
# shellcheck disable=SC2086
timeout -k 5 60 $MPIEXEC -np 2 "$prefix/bin/dtrain" --version > "$work/version2" 2>&1 \
    || { cat "$work/version2"; fail "mpirun -np 2 bin/dtrain --version failed"; }
[ "$(grep -c '^dtrain ' "$work/version2")" -eq 1 ] || { cat "$work/version2"; fail "not exactly one version line on 2 ranks"; }

# The installed sbatch script, outside the source tree (no build/dtrain
# there), finds dtrain on PATH. Without Slurm it runs as a plain script:
# mpirun on 1 rank, 2 updates. summary.json then carries the --version facts.
cat > "$work/small.yaml" <<YAML
run: {seed: 0, out_dir: $work/out}
data: {dir: $DT_TEST_DATA/ok}
model: {layers: [{dense: 16}, relu, {dense: 10}]}
train: {steps: 2, global_batch: 16}
optimizer: {name: sgd, lr: 0.1}
checkpoint: {every_steps: 0}
YAML
mpirun_args="-np 1 --allow-run-as-root --oversubscribe --bind-to none"
(cd "$work" && env -u DTRAIN_BIN -u SLURM_SUBMIT_DIR -u SLURM_JOB_ID PATH="$prefix/bin:$PATH" \
    DTRAIN_LAUNCHER=mpirun DTRAIN_MPIRUN_ARGS="$mpirun_args" DTRAIN_PROGRESS=lines \
    timeout -k 5 120 bash "$share/launch/dtrain.sbatch" small.yaml) > "$work/sbatch.log" 2>&1
rc=$?
[ $rc -eq 0 ] || { cat "$work/sbatch.log"; fail "installed dtrain.sbatch exited with $rc"; }
grep -qF "$prefix/bin/dtrain" "$work/sbatch.log" || { cat "$work/sbatch.log"; fail "dtrain.sbatch did not run $prefix/bin/dtrain"; }

summary=$work/out/summary.json
[ -f "$summary" ] || { cat "$work/sbatch.log"; fail "no $summary"; }
# "key": "value" of summary.json against "key: value" of --version
for key in version git_commit blas_core mpi_library; do
    if [ $key = version ]; then want=$version; else want=$(sed -n "s/^$key: //p" "$work/version"); fi
    got=$(sed -n "s/^ *\"$key\": \"\(.*\)\",\{0,1\}$/\1/p" "$summary")
    [ -n "$got" ] && [ "$got" = "$want" ] || { cat "$summary"; fail "summary.json $key is '$got', --version says '$want'"; }
done
echo "PASS install ($prefix)"
