#!/usr/bin/env bash
# run.sh MODEL OPTIMIZER NP - one PyTorch cross-check (crosscheck.py) in a
# fresh folder, with Debian's Python (/usr/bin/python3, where python3-torch
# installs). No such Python, or no torch in it: SKIP (exit 77), never a pass.
# Environment: DTRAIN, MPIEXEC (as the other shell tests).
. "$(dirname "$0")/../lib.sh"
py=${DT_TORCH_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || skip "$py not found (apt-get install python3-torch python3-numpy)"
new_work_dir dtrain-torch
"$py" "$(dirname "$0")/crosscheck.py" --model "$1" --optimizer "$2" --np "$3" --work "$WORK"
