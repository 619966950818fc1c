#!/usr/bin/env bash
# Records Karpenter's plans for N = 1..32 share pods (tests/deploy/karpenter) as
# bench/results/karpenter-packing-<date>.md and .png. Not part of CI: it writes into the repo.
# Needs Go and Python 3; matplotlib is installed into a venv under $SLICER_CACHE_DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SLICER_CACHE_DIR:-$HOME/.cache/gpu-slicer}
date=$(date -u +%Y-%m-%d)
csv=$(mktemp)
trap 'rm -f "$csv"' EXIT

PACKING_RESULTS_CSV="$csv" "$here/run.sh"

venv="$cache/venv-plot"
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import matplotlib' 2>/dev/null || "$venv/bin/pip" install -q 'matplotlib==3.11.*'

machine="$(uname -sm), $(nproc) cores, $(. /etc/os-release && echo "$PRETTY_NAME")"
"$venv/bin/python" "$here/packing_report.py" "$csv" "$repo/bench/results/karpenter-packing-$date" \
  "$date" "$machine" "tests/deploy/record-packing.sh"
