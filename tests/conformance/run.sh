#!/usr/bin/env bash
# Kubelet conformance (issue 3): runs the Go tests in this folder, which drive the upstream kubelet
# device manager against the real `slicer device-plugin` on the fake NVML.
#
# Usage: tests/conformance/run.sh [SLICER_BIN [SLICER_FAKES_DIR]] [go test flags, e.g. -run X]
#   SLICER_BIN        the slicer binary (default: env SLICER_BIN)
#   SLICER_FAKES_DIR  folder holding the fake libnvidia-ml.so.1 (default: env SLICER_FAKES_DIR)
#   SLICER_CACHE_DIR  when set, Go's module and build caches live under it (CI keeps it between
#                     runs); modules come from the Go module proxy (GOPROXY) on a cold cache.
#   GO                the go command (default: the first new enough of go on PATH and
#                     /usr/local/go/bin/go; scripts/go-toolchain.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

bin=${SLICER_BIN:-}
fakes=${SLICER_FAKES_DIR:-}
if [[ $# -gt 0 && $1 != -* ]]; then bin=$1; shift; fi
if [[ $# -gt 0 && $1 != -* ]]; then fakes=$1; shift; fi
if [[ -z "$bin" || -z "$fakes" ]]; then
  echo "conformance: need the slicer binary and the fakes folder (args or SLICER_BIN, SLICER_FAKES_DIR)" >&2
  exit 2
fi
[[ -x "$bin" ]] || { echo "conformance: $bin: not an executable" >&2; exit 2; }
[[ -e "$fakes/libnvidia-ml.so.1" ]] || { echo "conformance: no libnvidia-ml.so.1 in $fakes" >&2; exit 2; }
export SLICER_BIN=$(realpath "$bin") SLICER_FAKES_DIR=$(realpath "$fakes")

if [[ -n "${SLICER_CACHE_DIR:-}" ]]; then
  export GOMODCACHE=$SLICER_CACHE_DIR/go/mod GOCACHE=$SLICER_CACHE_DIR/go/build
fi
# The Go toolchain (scripts/go-toolchain.sh: go.mod's version or newer, -mod=readonly).
source "$here/../../scripts/go-toolchain.sh"
slicer_go_setup "$here/go.mod" || exit 2

cd "$here"
start=$(date +%s)
"$go" test -v -count=1 -timeout 20m "$@" ./...
echo "conformance: passed in $(( $(date +%s) - start ))s (build included)"
