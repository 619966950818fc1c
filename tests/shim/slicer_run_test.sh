#!/usr/bin/env bash
# `slicer run` end to end on the fake driver: the cap holds for the whole process tree, a bad size
# is refused with a message, and the exit status is the command's.
# Usage: slicer_run_test.sh SLICER SHIM CLIENT FAKES_DIR
set -u
slicer=$1 shim=$2 client=$3 fakes=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'devices:\n  - {uuid: GPU-11111111-1111-1111-1111-111111111111, memoryMiB: 16384}\n' >"$tmp/m.yaml"
export SLICER_SHIM=$shim LD_LIBRARY_PATH=$fakes SLICER_FAKE_NVML=$tmp/m.yaml SLICER_LEDGER_DIR=$tmp
fails=0
check() { if [[ "$1" == "$2" ]]; then echo "ok: $3"; else echo "FAIL: $3 (got $1, wanted $2)"; fails=$((fails + 1)); fi; }

"$slicer" run --memory 1GiB -- "$client" init alloc:600M alloc:600M >/dev/null 2>&1
check $? 2 "one process past a 1GiB cap gets CUDA_ERROR_OUT_OF_MEMORY"
"$slicer" run --memory 1GiB -- "$client" init alloc:900M >/dev/null 2>&1
check $? 0 "under the cap"
# Two processes of the tree share the cap: the second one cannot take what the first holds.
"$slicer" run --memory=1GiB -- sh -c "\"$client\" init alloc:600M hold >/dev/null & h=\$!; sleep 1; \
  \"$client\" init alloc:600M >/dev/null 2>&1; r=\$?; kill \$h; exit \$r"
check $? 2 "processes of one tree share the cap"
"$slicer" run -- "$client" init alloc:4G >/dev/null 2>&1
check $? 0 "without --memory nothing is capped"
out=$("$slicer" run --memory lots -- true 2>&1)
check $? 2 "a bad size is refused"
[[ "$out" == *'--memory "lots" is not a size'* ]]; check $? 0 "the message names the bad size"
"$slicer" run -- sh -c 'exit 7'
check $? 7 "the command's exit status comes back"
ls "$tmp"/slicer-run-*.ledger >/dev/null 2>&1
check $? 2 "ledger files are removed at the end"
exit $((fails > 0))
