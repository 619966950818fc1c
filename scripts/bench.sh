#!/usr/bin/env bash
# CPU benchmarks that run on this machine; prints markdown tables for bench/results/.
# Usage: scripts/bench.sh [iterations]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
build=${SLICER_BUILD_DIR:-build-bench}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target slicer plugin_bench fake_nvml >/dev/null
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)"
echo "command: scripts/bench.sh ${1:-2000}"
echo
"$build/plugin_bench" "$build/slicer" "$build/fakes" "${1:-2000}"
