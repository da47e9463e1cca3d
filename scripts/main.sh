#!/usr/bin/env bash
# The main job: the whole appliance on this machine. Sets up if needed (a virtualenv in .venv
# with every part, and mosquitto), then replaces itself with `waferscope demo`, which starts a
# private Mosquitto broker, the hub and edge agents as processes, feeds the edges' hot folders
# with the tester simulator (real WM-811K maps written as tester files), prints the hub's
# address with a reviewer login and each edge panel's address, and stops everything on Ctrl-C.
# Arguments go to `waferscope demo` (docs/demo.md, `waferscope demo --help`):
#   scripts/main.sh                        2 edges, the WM-811K validation maps of $WAFER_DATA_DIR
#                                          (../shared/data), state in ./waferscope-demo
#   scripts/main.sh --edges 4 --rate 10    more testers, faster
#   scripts/main.sh --fresh                forget the previous run's results and start over
# Reading, drawing and classifying tester files once, without services (the former main job):
# scripts/classify-files.sh [FILE...].
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
VENV=${WAFERSCOPE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
exec waferscope demo "$@"
