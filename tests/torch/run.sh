#!/usr/bin/env bash
# run.sh MODEL OPTIMIZER NP - one PyTorch cross-check (crosscheck.py) in a
# fresh folder, with Debian's Python (/usr/bin/python3, where python3-torch
# installs). No such Python, or no torch in it: SKIP (exit 77), never a pass.
# Environment: DTRAIN, MPIEXEC (as the other shell tests).
here=$(cd "$(dirname "$0")" && pwd) # before new_work_dir changes the folder
. "$here/../lib.sh"
py=${DT_TORCH_PYTHON:-/usr/bin/python3}
[ -x "$py" ] || skip "$py not found (apt-get install python3-torch python3-numpy)"
new_work_dir dtrain-torch
"$py" "$here/crosscheck.py" --model "$1" --optimizer "$2" --np "$3" --work "$WORK"
