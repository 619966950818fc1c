#!/usr/bin/env bash
# The demo: installs dependencies, builds, and runs `slicer demo` — the device plugin on a
# simulated node (4x Tesla T4 through the fake driver libraries; a real GPU when one is present),
# with the kubelet played by the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
build=${SLICER_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target slicer slicer_shim fake_nvml fake_cuda >/dev/null
exec "$build/slicer" demo "$@"
