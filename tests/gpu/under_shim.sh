#!/usr/bin/env bash
# Runs a command under libslicer.so with a memory cap, as `slicer run --memory` would (the GPU
# machine builds without the daemons, so there is no slicer binary there).
# Usage: under_shim.sh SHIM CAP_BYTES CONTAINER_ID CMD [ARGS...]
# Exit 77 (ctest: skipped) when there is no GPU, or when CMD is python3 and torch is missing.
set -u
shim=$1 cap=$2 id=$3
shift 3
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "no GPU: skipped"
  exit 77
fi
if [[ "$(basename "$1")" == python3* ]] && ! "$1" -c 'import torch' >/dev/null 2>&1; then
  echo "no PyTorch: skipped"
  exit 77
fi
ledger=${SLICER_TEST_LEDGER_DIR:-/tmp/slicer-gpu-ledgers}
mkdir -p "$ledger"
export LD_PRELOAD=$shim SLICER_MEMORY_LIMITS="*=$cap" SLICER_ENFORCE=1 \
  SLICER_CONTAINER_ID="$id-$$" SLICER_LEDGER_DIR="$ledger"
exec "$@"
