#!/usr/bin/env bash
# A capped CUDA program runs into its cap while an uncapped neighbour on the same GPU keeps
# computing; the neighbour must finish with every result verified.
# Usage: neighbour.sh SHIM RUNTIME_CAP
set -u
shim=$1 prog=$2
here=$(dirname "$0")
if ! nvidia-smi -L >/dev/null 2>&1; then echo "no GPU: skipped"; exit 77; fi
"$prog" neighbour 4096 8 >"${TMPDIR:-/tmp}/neighbour.$$" 2>&1 &
n=$!
sleep 1
"$here/under_shim.sh" "$shim" 2147483648 capped "$prog" fill 2147483648 64
capped=$?
"$here/under_shim.sh" "$shim" 2147483648 capped "$prog" async 2147483648 64
capped_async=$?
wait $n
neighbour=$?
cat "${TMPDIR:-/tmp}/neighbour.$$"
echo "capped=$capped capped_async=$capped_async neighbour=$neighbour"
[[ $capped == 0 && $capped_async == 0 && $neighbour == 0 ]]
