#!/usr/bin/env bash
# Classify files once, without any service (the main job before the appliance ran; the main job
# is now `waferscope demo`, see scripts/main.sh): set up if needed, read real tester files in
# every format, print each wafer's summary and quality findings, draw every wafer into
# out/pictures/, then classify each wafer with the shipped INT8 engine and write its Grad-CAM
# explanation into out/explain/.
#   scripts/classify-files.sh            the real tester files of $WAFER_DATA_DIR (../shared/data)
#   scripts/classify-files.sh FILE...    your own files
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >&2
VENV=${WAFERSCOPE_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
DATA=${WAFER_DATA_DIR:-../shared/data}
OUT=${WAFERSCOPE_OUT:-out/pictures}

if [ $# -gt 0 ]; then
  files=("$@")
else
  if [ ! -d "$DATA/tester" ]; then
    echo "classify-files: no real data at $DATA (set WAFER_DATA_DIR or pass files)" >&2
    exit 1
  fi
  # every tester file except the text datalog, which is a cross-check, not a wafer map
  mapfile -t files < <(find "$DATA/tester" -type f ! -name '*.data.gz' | sort)
fi

echo "== waferscope formats"
waferscope formats
echo
echo "== waferscope inspect (${#files[@]} files)"
# Exit status 1 means "a file or wafer was refused, and the reason was printed" — part of the
# job's report; anything higher (a usage error, a crash) fails the job.
status=0
note() { local rc=$1; if [ "$rc" -gt 1 ]; then status=$rc; fi; }
waferscope inspect "${files[@]}" || note $?
echo
echo "== waferscope convert --to png -> $OUT"
mkdir -p "$OUT"
for f in "${files[@]}"; do
  waferscope convert "$f" --to png -o "$OUT" --limit 5 || note $?
done
echo
echo "== waferscope classify --explain out/explain (shipped INT8 model)"
waferscope classify --explain out/explain "${files[@]}" || note $?
exit $status
