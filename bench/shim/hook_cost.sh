#!/usr/bin/env bash
# What the shim adds to each kernel launch, counted on the CPU: the fake libcuda (tests/fakes)
# makes a launch cost ~100 ns, so the shim's own instructions are not lost in a real driver's
# 3-5 µs launch and its run-to-run noise. Three configurations, rotated within each round:
#   base   no shim;
#   shim   libslicer.so preloaded with a memory cap, no arbiter (the hook's mode check only);
#   gated  the same with an arbiter socket: a lone gated client (its lease is open: the launch
#          marked in flight, the state check and the queue-bounding checkpoints).
# Each run is `shim_cuda_client init launch:N:0`, which prints launch_ns (wall time per launch
# call, the final sync excluded), pinned with taskset to CPUS. Output: one line per run
# (case=hookcost cfg=... round=... launch_ns=...) and a last one (case=hookcost cfg=summary) with
# the medians and the median of the per-round differences to base. Divide those by a real
# launch's time (the `overhead` part of scripts/gpu-arbiter.sh) for the overhead on a GPU.
# bench/shim/launch_ab.cc measures the same inside one process.
#
# Usage: bench/shim/hook_cost.sh BUILD_DIR SLICER_BIN [ROUNDS=15] [N=3000000] [CPUS=1]
#   BUILD_DIR holds libslicer.so, shim_cuda_client and fakes/libcuda.so.1; SLICER_BIN is the
#   `slicer` that runs the arbiter (with LD_LIBRARY_PATH set by the caller where it needs it).
set -uo pipefail
B=$(realpath "$1") SLICER=$2 ROUNDS=${3:-15} N=${4:-3000000} CPUS=${5:-1}
W=$(mktemp -d /tmp/slicer-hookcost.XXXXXX)
trap 'kill $arb 2>/dev/null; wait $arb 2>/dev/null; rm -rf "$W"' EXIT
printf 'devices:\n  - {uuid: GPU-8a1b2c3d-0000-4000-8000-000000000001, name: Fake GPU, memoryMiB: 81920}\n' \
  >"$W/machine.yaml"
"$SLICER" arbiter --socket "$W/arb.sock" --attribution none --policy fair \
  --metrics-address 127.0.0.1 --metrics-port 0 >"$W/arbiter.log" 2>&1 &
arb=$!
for _ in $(seq 200); do [[ -S $W/arb.sock ]] && break; sleep 0.05; done
[[ -S $W/arb.sock ]] || { echo "hook_cost: the arbiter did not start"; cat "$W/arbiter.log"; exit 1; }

one() {  # CFG ROUND: prints launch_ns
  local env=(LD_LIBRARY_PATH="$B/fakes" SLICER_FAKE_NVML="$W/machine.yaml")
  [[ $1 != base ]] && env+=(LD_PRELOAD="$B/libslicer.so" SLICER_LEDGER_DIR="$W" SLICER_ENFORCE=1
    SLICER_MEMORY_LIMITS='*=68719476736' SLICER_CONTAINER_ID="hc-$1-$2")
  [[ $1 == gated ]] && env+=(SLICER_ARBITER_SOCKET="$W/arb.sock")
  local line
  line=$(env "${env[@]}" taskset -c "$CPUS" "$B/shim_cuda_client" init "launch:$N:0" | grep '^op=launch')
  [[ $line == *" result=0 "* ]] || { echo "hook_cost: $1 failed: $line" >&2; return 1; }
  sed -E 's/.*launch_ns=([0-9.]+).*/\1/' <<<"$line"
}

: >"$W/lines"
for ((r = 1; r <= ROUNDS; r++)); do
  order=(base shim gated)
  ((r % 3 == 1)) && order=(shim gated base)
  ((r % 3 == 2)) && order=(gated base shim)
  for cfg in "${order[@]}"; do
    ns=$(one "$cfg" "$r") || exit 1
    echo "case=hookcost cfg=$cfg round=$r n=$N launch_ns=$ns" | tee -a "$W/lines"
  done
done
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //; s/ /_/g')
python3 - "$W/lines" "${cpu:-unknown}" <<'EOF'
import statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    d = dict(kv.split("=", 1) for kv in line.split())
    rows.setdefault(int(d["round"]), {})[d["cfg"]] = float(d["launch_ns"])
med = {c: st.median(r[c] for r in rows.values()) for c in ("base", "shim", "gated")}
diff = {c: st.median(r[c] - r["base"] for r in rows.values()) for c in ("shim", "gated")}
print(f"case=hookcost cfg=summary rounds={len(rows)} base_ns={med['base']:.1f} shim_ns={med['shim']:.1f} "
      f"gated_ns={med['gated']:.1f} shim_added_ns={diff['shim']:.1f} gated_added_ns={diff['gated']:.1f} "
      f"cpu={sys.argv[2]}")
EOF
