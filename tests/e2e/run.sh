#!/usr/bin/env bash
# ctest's entry (label e2e): scripts/e2e.sh test when SLICER_E2E=1, else skipped (exit 77).
set -euo pipefail
if [[ ${SLICER_E2E:-} != 1 ]]; then
  echo "SKIP: end-to-end cluster test is opt-in: SLICER_E2E=1 ctest -L e2e (docs/e2e.md)"
  exit 77
fi
[[ $(id -u) == 0 ]] || { echo "SKIP: the end-to-end test needs root"; exit 77; }
exec "$(dirname "$0")/../../scripts/e2e.sh" test
