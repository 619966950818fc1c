#!/usr/bin/env bash
# The README's first command, checked: `slicer demo` on the simulated node (fake NVML and libcuda
# built beside the binary) exits 0 and shows what it claims — capacity GPUs x replicas, per-pod
# memory caps the workloads see and hit, GPU 0's time split by replicas held (2:1:1), the arbiter
# naming every pod with its memory, XID -> unhealthy -> recovered, SIGHUP reload, clean SIGTERM.
# Usage: demo_test.sh SLICER
set -u
slicer=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fails=0
check() { if [[ "$1" == "$2" ]]; then echo "ok: $3"; else echo "FAIL: $3 (got $1, wanted $2)"; fails=$((fails + 1)); fi; }
has() { grep -qF -- "$1" "$out"; check $? 0 "$2"; }

env -u NVIDIA_VISIBLE_DEVICES -u SLICER_FAKE_NVML "$slicer" demo --simulate >"$out" 2>&1
check $? 0 "the demo exits 0"
has "node capacity nvidia.com/gpu = 16 (4 GPUs x 4 replicas)" "capacity is GPUs x replicas"
has "trainer asks for 2 shares -> plugin prefers GPU-00000000-de70-4c0d-8a1e-000000000000::2 GPU-00000000-de70-4c0d-8a1e-000000000000::3" \
  "a 2-share pod is packed onto one GPU"
has "trainer (2 of 4): sees 7.5GiB of GPU memory; asking for more -> out of memory" "2 of 4 replicas: half the memory, and the cap holds"
has "inference-a (1 of 4): sees 3.8GiB of GPU memory; asking for more -> out of memory" "1 of 4 replicas: a quarter"
# The arbiter's table (slicer status): every pod named through PodResources, weight = replicas held,
# the memory each one holds against its cap.
row() { grep -E "^default +$1 +main " "$out"; }
[[ "$(row trainer)" =~ \ 2\.00\ +50%\ .*3\.8GiB\ /\ 7\.5GiB$ ]]; check $? 0 "status: trainer weight 2, share 50%, 3.8GiB of 7.5GiB"
[[ "$(row inference-b)" =~ \ 1\.00\ +25%\ .*1\.9GiB\ /\ 3\.8GiB$ ]]; check $? 0 "status: inference-b weight 1, share 25%, 1.9GiB of 3.8GiB"
[[ "$(row notebook)" =~ GPU-11111111.*\ 100%\  ]]; check $? 0 "status: the notebook has GPU 1 to itself"
# GPU time each pod's own program measured: the trainer (2 replicas) gets about twice an inference pod's.
gpu_s() { sed -n "s/.*$1 ([0-9] of 4): .*GPU time \([0-9.]*\) s in.*/\1/p" "$out"; }
t=$(gpu_s trainer) a=$(gpu_s inference-a) b=$(gpu_s inference-b)
ratio_ok=$(awk -v t="$t" -v a="$a" -v b="$b" 'BEGIN { print (a > 0 && b > 0 && t / a > 1.4 && t / b > 1.4 && t / a < 2.8 && t / b < 2.8) ? 0 : 1 }')
check "$ratio_ok" 0 "trainer's GPU time is ~2x each inference pod's (trainer $t s, inference $a s, $b s)"
has "healthy devices: 12 of 16 (all 4 replicas of that GPU)" "an XID takes all 4 replicas of that GPU out"
has "the GPU answers again: healthy devices 16 of 16" "recovery brings them back"
has "re-registered: capacity 32" "SIGHUP with replicas 8 re-registers"
has "registrations: 2, capacity still 32" "a broken config is refused and the running one stays"
has "exit 0, plugin sockets removed" "SIGTERM is clean"
if ((fails)); then echo "--- demo output"; cat "$out"; exit 1; fi
