#!/usr/bin/env bash
# The arbiter under hostile clients (issue 16), on the CPU: two honest saturating clients at
# weights 3:1 (tests/arbiter/test_client.cc: the real client library on a simulated stream) run
# SECONDS alone, then SECONDS again while THREADS threads of bench/arbiter/soak.cc attack the same
# socket. Prints each run's shares and totals, the soak's counts, whether the arbiter is still
# alive and answering /metrics, and its error counters.
#   bench/arbiter/soak.sh [BUILD_DIR] [SECONDS] [THREADS]     (defaults: build 20 4)
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build}
S=${2:-20}
T=${3:-4}
dir=$(mktemp -d)
port=$((19600 + RANDOM % 300))
# gating: always, so that the honest pair is leased by weight (the simulated stream's waits are
# not reported as LOAD, so under the default gating they would share the GPU unweighted).
printf 'arbiter:\n  gating: always\n' >"$dir/arbiter.yaml"
"$B/slicer" arbiter --socket "$dir/arb.sock" --metrics-address 127.0.0.1 --metrics-port "$port" \
  --attribution none --policy fair --config-file "$dir/arbiter.yaml" >"$dir/arbiter.log" 2>&1 &
arb=$!
trap 'kill $arb 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do [[ -S $dir/arb.sock ]] && break; sleep 0.05; done

honest() { # TAG: the 3:1 pair for S seconds; prints their work and ratio
  "$B/arbiter_test_client" socket="$dir/arb.sock" seconds="$S" kernel_us=1000 sync_every=4 \
    weight=3 token=honest-a >"$dir/$1-a.out" 2>&1 &
  local a=$!
  "$B/arbiter_test_client" socket="$dir/arb.sock" seconds="$S" kernel_us=1000 sync_every=4 \
    weight=1 token=honest-b >"$dir/$1-b.out" 2>&1 &
  local b=$!
  wait $a $b
  local wa wb
  wa=$(grep -o 'work_ns=[0-9]*' "$dir/$1-a.out" | cut -d= -f2)
  wb=$(grep -o 'work_ns=[0-9]*' "$dir/$1-b.out" | cut -d= -f2)
  python3 -c "import sys; a,b,s=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3]); print(f'honest: run=$1 work_a_s={a/1e9:.2f} work_b_s={b/1e9:.2f} ratio={a/b:.3f} total_per_s={(a+b)/1e9/s:.3f}')" "$wa" "$wb" "$S"
}

rss() { awk '/^VmRSS/ {print $2}' /proc/$arb/status; }
honest alone
rss_before=$(rss)
"$B/arbiter_soak" "$dir/arb.sock" "$S" "$T" >"$dir/soak.out" 2>&1 &
soak=$!
honest soaked
wait $soak && soak_rc=0 || soak_rc=$?
cat "$dir/soak.out"
alive=0
kill -0 $arb 2>/dev/null && alive=1
echo "arbiter: rss_kib_before_soak=$rss_before rss_kib_after=$( ((alive)) && rss || echo -)"
metrics=$(curl -s --max-time 2 "http://127.0.0.1:$port/metrics" || true)
echo "arbiter: alive=$alive metrics_lines=$(grep -c . <<<"$metrics") soak_rc=$soak_rc"
grep -E '^slicer_arbiter_client_errors_total|^slicer_arbiter_clients\{|^slicer_arbiter_connections' <<<"$metrics" | head -20 || true
echo "arbiter log: $(grep -c . "$dir/arbiter.log") lines, $(grep -c 'level=error' "$dir/arbiter.log" || true) at level=error"
[[ $alive == 1 && $soak_rc == 0 ]]
