#!/usr/bin/env bash
# Runs every test that can run on this machine: installs dependencies, builds, runs ctest (unit,
# integration, fuzz smoke, kubelet conformance, deploy validation). Tests labelled `gpu` are
# skipped unless a GPU is present. Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The Go tests need the toolchain their go.mod names: say so now, not as a ctest failure later.
source scripts/go-toolchain.sh
for mod in tests/conformance/go.mod tests/deploy/go.mod; do
  (slicer_go_setup "$mod" >/dev/null) || { echo "test: no Go toolchain for $mod (above)" >&2; exit 1; }
done
build=${SLICER_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build"
label_args=()
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  label_args=(-LE gpu)
  echo "test: no GPU here: tests labelled gpu are skipped"
fi
ctest --test-dir "$build" --output-on-failure "${label_args[@]}" "$@"
