#!/usr/bin/env bash
# The arbiter's GPU measurements (issue 6) in one call on the GPU machine: each case is run
# against plain driver time-slicing (no shim) in the same run. Results (results.txt, one
# key=value line per process), the summary table (summary.md), a plot (arbiter.png) and the logs
# (logs.tar.gz) go to $OUT (default out/gpu-arbiter). bench/results/arbiter-*.md reads them.
#
# The GPU machine has nvcc, cmake and PyTorch but no gRPC/protobuf/yaml-cpp, so `slicer arbiter`
# is built here and carried: scripts/gpu-arbiter.sh --pack copies the slicer binary (stripped)
# and the shared libraries it needs that a CUDA image may lack into out/carry/ (name it in the
# device tool's `carry`). libslicer.so is built on the GPU machine (scripts/gpu-shim.sh, which
# also runs the shim's GPU tests so that the caps are re-verified with the arbiter client linked
# in).
#
# Usage: scripts/gpu-arbiter.sh --pack [BUILD_DIR]        (here)
#        scripts/gpu-arbiter.sh [PARTS]                    (GPU machine)
#   PARTS: comma list of shimtests,a,b,c,d,e,overhead,f,g (default: all, in the order
#     shimtests,a,b,c,d,overhead,e,f,g)
#   SLICER_BENCH_SECONDS (8): length of each CUDA case; SLICER_TORCH_SECONDS (8): of each PyTorch
#     run (e, f, g).
#   SLICER_A_HANDOVERS ("drain overlap"): the arbiter's `handover` settings for (a).
#   SLICER_B_RUNS ("default batchQuantum=20ms"): the arbiter runs for (b), each `default` or a
#     comma list of arbiter config settings (KEY=VALUE, e.g. quantum=50ms,handover=overlap) and
#     `spin`: the clients and the arbiter never sleep (a diagnostic of what waking up costs a
#     hand-over: SLICER_ARB_SPIN, SLICER_ARBITER_SPIN). cfg in results.txt: arb:SPEC.
#   (b)'s runs are traced: each kernel's GPU time and each client's lease steps; handover.py's
#   line per run (`handover: ...`) goes to results.txt.
#   SLICER_ALONE_MQ (""): maxQueued values (ms) for one saturating client alone under the arbiter
#     (priority policy): what a lone client pays for the checkpoints that bound its queue.
#   SLICER_E_RUNS ("default"): arbiter runs for (e), as SLICER_B_RUNS (cfg arb<W> for default,
#     arb<W>:SPEC otherwise); their clients' lease timelines are kept in the logs.
#   SLICER_D_ROUNDS (1): rounds of (d), plain and arbiter interleaved.
#   SLICER_C_MQ ("10 2"): maxQueued values (ms) for (c) and (d).
#   SLICER_OVERHEAD_ROUNDS (9): rounds of the overhead loop (base, shim, gated in rotated order),
#     on the real driver and then on the fake one (bench/shim/hook_cost.sh: the hook's ns).
#   SLICER_AB_PROCS (3): processes of bench/shim/launch_ab.cc per configuration (shim, gated):
#     the driver's and the shim's cuLaunchKernel in alternating batches of one process.
#   SLICER_AB_PREV_SHIM (""): another libslicer.so (an earlier tree's, say) that launch_ab also
#     runs as a lone gated client in each of those rounds (cfg gated-prev), for a comparison made
#     in the same run.
#   (f) and (g) run bench/arbiter/infer_loop.py (real models, random weights; issue 13):
#   SLICER_F_MODELS ("resnet50 bert mlp gpt2"): the models of (f); for each, the runs named in
#     SLICER_F_CFGS ("alone plain arb arblease"): one process alone, then SLICER_F_PROCS (4)
#     processes under plain time-slicing, under the arbiter (policy fair, its default gating) and
#     under the arbiter with `gating: always` (every client leased: the earlier design).
#   SLICER_G_CFGS ("alone plain arb arbhigh arblease"): the runs of (g), resnet50 inference beside
#     a saturating bf16 trainer: each alone, plain, arbiter fair with equal weights, arbiter
#     priority (inference high, trainer low), arbiter fair with `gating: always`.
#   SLICER_TORCH_START (60): the latest start (s) of an (f)/(g) run. Its processes start together
#     0.5 s after the last of them has warmed up (infer_loop.py's INFER_GO barrier), so this is
#     only the deadline when one of them never gets ready.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == --pack ]]; then
  build=${2:-build}
  dest=out/carry
  rm -rf "$dest" && mkdir -p "$dest/lib"
  strip -o "$dest/slicer" "$build/slicer"
  # Everything but the C/C++ runtime (the GPU machine's glibc and libstdc++ are newer).
  ldd "$build/slicer" | awk '$3 ~ /^\// {print $3}' |
    grep -vE '/(libc|libm|libdl|libpthread|librt|libgcc_s|libstdc\+\+|ld-linux-x86-64)\.so' |
    while read -r lib; do cp -L "$lib" "$dest/lib/"; done
  du -sh "$dest"
  LD_LIBRARY_PATH=$dest/lib "$dest/slicer" arbiter --help >/dev/null && echo "packed: $dest"
  exit 0
fi

parts=${1:-shimtests,a,b,c,d,overhead,e,f,g}
OUT=${OUT:-$PWD/out/gpu-arbiter}
mkdir -p "$OUT"
W=/tmp/slicer-arbiter-bench
rm -rf "$W" && mkdir -p "$W"
D=${SLICER_BENCH_SECONDS:-8}
TD=${SLICER_TORCH_SECONDS:-8}
CARRY=${SLICER_CARRY:-$PWD/out/carry}
SHIM=/tmp/slicer-gpu-build/libslicer.so
RES=$OUT/results.txt
: >"$RES"
say() { echo "== $(date +%T) $*"; }
has() { [[ ",$parts," == *",$1,"* ]]; }
finish() {
  python3 bench/arbiter/report.py "$RES" "$OUT/summary.md" "$OUT/arbiter.png" >"$W/report.log" 2>&1 ||
    tail -5 "$W/report.log"
  tar -C "$W" -czf "$OUT/logs.tar.gz" . 2>/dev/null
  [[ -f $OUT/summary.md ]] && cat "$OUT/summary.md"
}
trap finish EXIT
trap 'exit 143' TERM

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
  nvidia-smi -q | grep -iE 'product name|timeslice|compute mode' | head -5
  nvcc --version | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1
  uname -r
  git log --oneline -1 2>/dev/null
} | tee "$W/env.txt" | sed 's/^/env: /' | tee -a "$RES"

if has shimtests || [[ ! -f $SHIM ]]; then
  say "shim: build + CPU and GPU tests (scripts/gpu-shim.sh tests)"
  OUT=$W/gpu-shim scripts/gpu-shim.sh tests >"$W/gpu-shim.log" 2>&1
  grep -E '^\| (cpu|gpu) tests|^\| jax' "$W/gpu-shim.log" | sed 's/^/shimtests: /' | tee -a "$RES"
  grep -E '^(ok|FAIL)' "$W/gpu-shim/ctest-gpu.log" 2>/dev/null | grep -c '^ok' | sed 's/^/shimtests: driver_paths ok lines: /'
  grep -E 'FAIL' "$W/gpu-shim/ctest-gpu.log" 2>/dev/null | head -5
fi
[[ -f $SHIM ]] || { echo "no $SHIM: shim build failed (see $W/gpu-shim.log)"; exit 1; }

# The CUDA workloads: only the parts that run them (e, f and g are PyTorch only).
if has a || has b || has c || has d || has overhead; then
  say "nvcc workloads"
  nvcc -O2 -gencode=arch=compute_90,code=sm_90 bench/arbiter/workload.cu -o "$W/workload" || exit 1
  nvcc -O2 -gencode=arch=compute_90,code=sm_90 bench/shim/overhead.cu -o "$W/overhead" || exit 1
  WL=$W/workload
  big=$("$WL" calibrate 2000 0)
  small=$("$WL" calibrate 50 1)
  echo "calibrate: big $big | small $small" | tee -a "$RES"
  BIG=$(sed 's/.*iters=\([0-9]*\).*/\1/' <<<"$big")
  SMALL=$(sed 's/.*iters=\([0-9]*\).*/\1/' <<<"$small")
fi

# ---- arbiter and clients ----
ARB_PID=
ARB_SOCK=
ARB_LOG_FROM=1
arbiter_start() {  # POLICY [extra flags]
  ARB_SOCK=$W/arb-$RANDOM.sock
  ARB_LOG_FROM=$(($(wc -l <"$W/arbiter.log" 2>/dev/null || echo 0) + 1))
  # Debug: a client_window line per Load window (each client's blocked fraction), for `load:`.
  SLICER_LOG_LEVEL=debug SLICER_ARBITER_SPIN=${SPIN:-0} LD_LIBRARY_PATH=$CARRY/lib "$CARRY/slicer" arbiter --socket "$ARB_SOCK" --attribution none \
    --policy "$1" --metrics-address 127.0.0.1 --metrics-port 19400 "${@:2}" >>"$W/arbiter.log" 2>&1 &
  ARB_PID=$!
  for _ in $(seq 200); do [[ -S $ARB_SOCK ]] && return 0; sleep 0.05; done
  echo "arbiter did not start"; tail -5 "$W/arbiter.log"; return 1
}
arbiter_stop() {  # TAG: keeps its /metrics
  python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:19400/metrics').read().decode())" \
    >"$W/metrics-$1.txt" 2>&1
  grep -E '^slicer_arbiter_(gpu_seconds_total|held_back_seconds_total)' "$W/metrics-$1.txt" |
    sed "s/^/metrics: tag=$1 /" >>"$RES"
  kill "$ARB_PID" 2>/dev/null
  wait "$ARB_PID" 2>/dev/null
  ARB_PID=
  # How the arbiter judged each client (gating: contended): windows, blocked fraction quartiles,
  # windows judged bound, transitions.
  tail -n +"$ARB_LOG_FROM" "$W/arbiter.log" | python3 -c '
import re, sys, statistics
names, fr, bound, flips = {}, {}, {}, {}
for line in sys.stdin:
    kv = dict(re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", line))
    c, ev = kv.get("client"), kv.get("event")
    if ev == "client_hello": names[c] = kv.get("container", c)
    elif ev == "client_window":
        fr.setdefault(c, []).append(float(kv["blocked"]))
        bound[c] = bound.get(c, 0) + (kv["bound"] == "true")
    elif ev == "client_load": flips[c] = flips.get(c, 0) + 1
for c, v in fr.items():
    q = statistics.quantiles(v, n=4) if len(v) > 1 else [v[0]] * 3
    print(f"load: tag=%s client={names.get(c, c)} windows={len(v)} blocked_q1={q[0]:.2f} "
          f"blocked_med={q[1]:.2f} blocked_q3={q[2]:.2f} bound_windows={bound[c]} flips={flips.get(c, 0)}")
' "$1" | sed "s/tag=%s/tag=$1/" >>"$RES"
}
start_at() { python3 -c "import time; print(time.monotonic_ns() + int($1 * 1e9))"; }

# client CASE CFG NAME WEIGHT PRIORITY CMD...: runs in the background; its line goes to $RES.
# Under the arbiter (CFG arb*) it runs under the shim with SLICER_LOG=debug: the shim's exit line
# (event=arbiter_stats: grants, waits, busy time) lands in $W/CASE-CFG-NAME.err.
pids=()
# arbiter_config NAME YAML_LINES...: a config file under $W; prints its path.
arbiter_config() {
  local f=$W/$1.yaml
  printf 'arbiter:\n' >"$f"
  shift
  printf '  %s\n' "$@" >>"$f"
  echo "$f"
}
client() {
  local c=$1 cfg=$2 name=$3 w=$4 p=$5
  local tag=${2//[^a-zA-Z0-9_-]/_}
  shift 5
  (
    if [[ $cfg == shim ]]; then  # the shim without an arbiter: what preloading it costs
      export LD_PRELOAD=$SHIM SLICER_CONTAINER_ID=$c-$tag-$name SLICER_LEDGER_DIR=$W
    fi
    if [[ $cfg == arb* ]]; then
      export LD_PRELOAD=$SHIM SLICER_ARBITER_SOCKET=$ARB_SOCK SLICER_CONTAINER_ID=$c-$tag-$name \
        SLICER_WEIGHT=$w SLICER_PRIORITY=$p SLICER_LEDGER_DIR=$W SLICER_LOG=debug \
        SLICER_ARB_SPIN=${SPIN:-0}
      [[ -n ${TRACE_DIR:-} ]] && export SLICER_ARB_TRACE=$TRACE_DIR/$name.lease
    fi
    [[ -n ${TRACE_DIR:-} ]] && export WORKLOAD_TRACE=$TRACE_DIR/$name.gpu
    line=$(timeout 150 "$@" 2>>"$W/$c-$tag-$name.err")
    stats=$(grep -o 'event=arbiter_stats.*' "$W/$c-$tag-$name.err" 2>/dev/null | tail -1 | sed 's/event=arbiter_stats //')
    echo "case=$c cfg=$cfg client=$name weight=$w priority=$p $line $stats" >>"$RES"
  ) &
  pids+=($!)
}
join() { wait "${pids[@]}"; pids=(); }

if has a || has b || has c; then
  say "alone: one saturating client"
  s=$(start_at 2)
  client alone plain sat 1 normal "$WL" saturate "$s" "$D" "$BIG"
  join
  for mq in ${SLICER_ALONE_MQ:-}; do
    arbiter_start priority --config-file "$(arbiter_config "alone-mq$mq" "maxQueued: ${mq}ms")" && {
      s=$(start_at 3)
      client alone "arbmq$mq" sat 1 low "$WL" saturate "$s" "$D" "$BIG"
      join
      arbiter_stop "alone-mq$mq"
    }
  done
fi

if has a; then
  say "(a) 2 saturating clients, weights 3:1"
  s=$(start_at 2)
  client a plain A 3 normal "$WL" saturate "$s" "$D" "$BIG"
  client a plain B 1 normal "$WL" saturate "$s" "$D" "$BIG"
  join
  # cfg arb: handover drain (as in earlier runs); arbov: handover overlap.
  for ho in ${SLICER_A_HANDOVERS:-drain overlap}; do
    cfg=arb
    [[ $ho == overlap ]] && cfg=arbov
    arbiter_start fair --config-file "$(arbiter_config "a-$ho" "handover: $ho")" && {
      s=$(start_at 3)
      client a "$cfg" A 3 normal "$WL" saturate "$s" "$D" "$BIG"
      client a "$cfg" B 1 normal "$WL" saturate "$s" "$D" "$BIG"
      join
      arbiter_stop "a-$ho"
    }
  done
fi

# run_spec SPEC: an arbiter run of SLICER_B_RUNS / SLICER_E_RUNS. Sets `lines` (its config file's
# lines), SPIN and `key` (SPEC as a file name).
run_spec() {
  lines=("policy: fair")
  SPIN=0
  key=${1//[^a-zA-Z0-9]/_}
  local items item
  IFS=, read -ra items <<<"$1"
  for item in "${items[@]}"; do
    case $item in
      default) ;;
      spin) SPIN=1 ;;
      *=*) lines+=("${item%%=*}: ${item#*=}") ;;
      *) echo "bad arbiter run item: $item"; exit 2 ;;
    esac
  done
}

# traced TAG START: handover.py's line for the traced run in $TRACE_DIR.
traced() {
  python3 bench/arbiter/handover.py "$2" "$D" "$1" "$TRACE_DIR" 2>&1 | tee -a "$RES"
  TRACE_DIR=
}

if has b; then
  for n in 4 8; do
    say "(b) $n equal saturating clients"
    s=$(start_at 3)
    TRACE_DIR=$W/trace-b$n-plain && mkdir -p "$TRACE_DIR"
    for i in $(seq "$n"); do client "b$n" plain "c$i" 1 normal "$WL" saturate "$s" "$D" "$BIG"; done
    join
    traced "b$n-plain" "$s"
    for run in ${SLICER_B_RUNS:-default batchQuantum=20ms}; do
      cfg=arb:$run
      run_spec "$run"
      arbiter_start fair --config-file "$(arbiter_config "b-$n-$key" "${lines[@]}")" && {
        s=$(start_at 4)
        TRACE_DIR=$W/trace-b$n-$key && mkdir -p "$TRACE_DIR"
        for i in $(seq "$n"); do client "b$n" "$cfg" "c$i" 1 normal "$WL" saturate "$s" "$D" "$BIG"; done
        join
        arbiter_stop "b$n-$key"
        traced "b$n-$cfg" "$s"
      }
      SPIN=0
    done
  done
fi

if has c; then
  say "(c) bursty high beside a saturating low"
  s=$(start_at 2)
  client c alone high 1 high "$WL" bursty "$s" "$D" "$BIG" 5 40
  join
  s=$(start_at 2)
  client c plain high 1 high "$WL" bursty "$s" "$D" "$BIG" 5 40
  client c plain low 1 low "$WL" saturate "$s" "$D" "$BIG"
  join
  # maxQueued values: a preempted low holder has less queued work with a smaller one.
  for mq in ${SLICER_C_MQ:-10 2}; do
    arbiter_start priority --config-file "$(arbiter_config "mq$mq" "maxQueued: ${mq}ms")" && {
      s=$(start_at 3)
      client c "arbmq$mq" high 1 high "$WL" bursty "$s" "$D" "$BIG" 5 40
      client c "arbmq$mq" low 1 low "$WL" saturate "$s" "$D" "$BIG"
      join
      arbiter_stop "c-mq$mq"
    }
  done
fi

if has d; then
  say "(d) latency-critical requests beside a saturating neighbour"
  s=$(start_at 2)
  client d alone lat 1 high "$WL" latency "$s" "$D" "$SMALL" 4 10
  join
  # SLICER_D_ROUNDS rounds of plain and arbiter runs, interleaved (a p99 moves run to run).
  for round in $(seq "${SLICER_D_ROUNDS:-1}"); do
    s=$(start_at 2)
    TRACE_DIR=$W/trace-d-plain-$round && mkdir -p "$TRACE_DIR" && echo "$s" >"$TRACE_DIR/start"
    client d plain lat 1 high "$WL" latency "$s" "$D" "$SMALL" 4 10
    client d plain nb 1 low "$WL" saturate "$s" "$D" "$BIG"
    TRACE_DIR=
    join
    for mq in ${SLICER_C_MQ:-10 2}; do
      arbiter_start priority --config-file "$(arbiter_config "mq$mq" "maxQueued: ${mq}ms")" && {
        s=$(start_at 3)
        TRACE_DIR=$W/trace-d-arbmq$mq-$round && mkdir -p "$TRACE_DIR" && echo "$s" >"$TRACE_DIR/start"
        client d "arbmq$mq" lat 1 high "$WL" latency "$s" "$D" "$SMALL" 4 10
        client d "arbmq$mq" nb 1 low "$WL" saturate "$s" "$D" "$BIG"
        TRACE_DIR=
        join
        arbiter_stop "d-mq$mq"
      }
    done
  done
fi

if has overhead; then
  say "overhead: launch-bound loop, base / shim without arbiter / shim with a lone gated client"
  arbiter_start fair
  pin=()
  command -v taskset >/dev/null && pin=(taskset -c 2)
  for ((round = 1; round <= ${SLICER_OVERHEAD_ROUNDS:-9}; round++)); do
    order=(base shim gated)
    ((round % 3 == 1)) && order=(shim gated base)
    ((round % 3 == 2)) && order=(gated base shim)
    for cfg in "${order[@]}"; do
      case $cfg in
        base) line=$("${pin[@]}" "$W/overhead" launch 30000) ;;
        shim) line=$(LD_PRELOAD=$SHIM SLICER_LEDGER_DIR=$W SLICER_MEMORY_LIMITS='*=68719476736' \
          SLICER_ENFORCE=1 SLICER_CONTAINER_ID=overhead-$round "${pin[@]}" "$W/overhead" launch 30000) ;;
        gated) line=$(LD_PRELOAD=$SHIM SLICER_LEDGER_DIR=$W SLICER_MEMORY_LIMITS='*=68719476736' \
          SLICER_ENFORCE=1 SLICER_ARBITER_SOCKET=$ARB_SOCK SLICER_CONTAINER_ID=overhead-$round \
          "${pin[@]}" "$W/overhead" launch 30000) ;;
      esac
      echo "case=overhead cfg=$cfg round=$round $line" | tee -a "$RES"
    done
  done
  arbiter_stop overhead
  # The same three configurations on the fake driver: what the hook adds per launch, in ns,
  # without the real driver's noise (bench/shim/hook_cost.sh; its arbiter needs the carried libs).
  LD_LIBRARY_PATH=$CARRY/lib bench/shim/hook_cost.sh "$(dirname "$SHIM")" "$CARRY/slicer" \
    "${SLICER_OVERHEAD_ROUNDS:-9}" 3000000 2 | tee -a "$RES"
  # Driver and shim side by side in one process (bench/shim/launch_ab.cc): the process's fast or
  # slow mode is shared by both sides.
  if cmake --build "$(dirname "$SHIM")" --target launch_ab >"$W/launch_ab-build.log" 2>&1; then
    arbiter_start fair
    for ((p = 1; p <= ${SLICER_AB_PROCS:-3}; p++)); do
      cfgs=(shim gated)
      [[ -n ${SLICER_AB_PREV_SHIM:-} ]] && cfgs+=(gated-prev)
      for cfg in "${cfgs[@]}"; do
        sock=() lib=$SHIM
        [[ $cfg == gated* ]] && sock=(SLICER_ARBITER_SOCKET=$ARB_SOCK)
        [[ $cfg == gated-prev ]] && lib=$(realpath "$SLICER_AB_PREV_SHIM")
        line=$(env SLICER_LEDGER_DIR=$W SLICER_MEMORY_LIMITS='*=68719476736' SLICER_ENFORCE=1 \
          SLICER_CONTAINER_ID=ab-$cfg-$p "${sock[@]}" "${pin[@]}" \
          "$(dirname "$SHIM")/launch_ab" "$lib" 400 2000 2>&1 | tail -1)
        echo "case=launchab cfg=$cfg proc=$p ${line#launch_ab }" | tee -a "$RES"
      done
    done
    arbiter_stop launchab
  else
    echo "launch_ab did not build:"; tail -20 "$W/launch_ab-build.log"
  fi
fi

if has e; then
  say "(e) PyTorch: inference and training sharing the GPU"
  T="python3 bench/arbiter/torch_loop.py"
  for m in infer train; do
    s=$(start_at 20)
    client e alone "$m" 1 normal $T "$m" "$s" "$TD"
    join
  done
  s=$(start_at 20)
  client e plain infer 1 normal $T infer "$s" "$TD"
  client e plain train 1 normal $T train "$s" "$TD"
  join
  for run in ${SLICER_E_RUNS:-default}; do
    run_spec "$run"
    for w in 1 3; do
      cfg=arb$w
      [[ $run != default ]] && cfg=arb$w:$run
      arbiter_start fair --config-file "$(arbiter_config "e-$key" "${lines[@]}")" && {
        s=$(start_at 20)
        # Lease timelines only (torch_loop.py writes no kernel trace).
        TRACE_DIR=$W/trace-e-$w-$key && mkdir -p "$TRACE_DIR"
        client e "$cfg" infer "$w" normal $T infer "$s" "$TD"
        client e "$cfg" train 1 normal $T train "$s" "$TD"
        TRACE_DIR=
        join
        arbiter_stop "e-$w-$key"
      }
    done
    SPIN=0
  done
fi

# ---- (f), (g): real PyTorch inference loads (bench/arbiter/infer_loop.py) ----
IL="python3 bench/arbiter/infer_loop.py"
# torch_run: a fresh start barrier for the clients started next (INFER_GO, exported to them);
# s is its deadline.
torch_run() {
  mkdir -p "$W/go"
  export INFER_GO=$W/go/$RANDOM$RANDOM
  s=$(start_at "${SLICER_TORCH_START:-60}")
}
# torch_go N LABEL: once N clients have warmed up (INFER_GO.ready.<pid>), or one of them has
# exited, or the deadline has passed, writes the start (0.5 s from now) for all of them.
torch_ready() { compgen -G "$INFER_GO.ready.*" | wc -l; }
torch_go() {
  local n=$1 t=0 p
  while (($(torch_ready) < n)); do
    for p in "${pids[@]}"; do
      kill -0 "$p" 2>/dev/null || { echo "torch: $2: a client exited before it was ready"; break 2; }
    done
    ((t++ >= ${SLICER_TORCH_START:-60} * 10)) && { echo "torch: $2: not all ready by the deadline"; break; }
    sleep 0.1
  done
  start_at 0.5 >"$INFER_GO.tmp" && mv "$INFER_GO.tmp" "$INFER_GO"
  echo "torch: $2: $(torch_ready)/$n ready after $((t / 10)).$((t % 10)) s" |
    tee -a "$RES"
}

if has f; then
  say "(f) real inference loads: ${SLICER_F_PROCS:-4} processes of a model, plain vs arbiter"
  for m in ${SLICER_F_MODELS:-resnet50 bert mlp gpt2}; do
    for cfg in ${SLICER_F_CFGS:-alone plain arb arblease}; do
      n=${SLICER_F_PROCS:-4}
      lines=("policy: fair")
      case $cfg in
        alone) n=1 ;;
        plain | arb | shim) ;;
        arblease) lines+=("gating: always") ;;
        *) echo "bad SLICER_F_CFGS item: $cfg"; exit 2 ;;
      esac
      if [[ $cfg == arb* ]]; then
        arbiter_start fair --config-file "$(arbiter_config "f-$m-$cfg" "${lines[@]}")" || continue
      fi
      torch_run
      for i in $(seq "$n"); do client f "$cfg" "$m-$i" 1 normal $IL "$m" "$s" "$TD"; done
      torch_go "$n" "f $m $cfg"
      join
      [[ $cfg == arb* ]] && arbiter_stop "f-$m-$cfg"
    done
  done
  unset INFER_GO
fi

# g_run CFG PRIORITY_INFER PRIORITY_TRAINER CLIENTS...: one run of (g) (clients: infer, trainer).
g_run() {
  local cfg=$1 pi=$2 pt=$3 c
  shift 3
  torch_run
  for c in "$@"; do
    case $c in
      infer) client g "$cfg" infer 1 "$pi" $IL resnet50 "$s" "$TD" ;;
      trainer) client g "$cfg" trainer 1 "$pt" $IL trainer "$s" "$TD" ;;
    esac
  done
  torch_go $# "g $cfg"
  join
}

if has g; then
  say "(g) resnet50 inference beside a saturating trainer"
  for cfg in ${SLICER_G_CFGS:-alone plain arb arbhigh arblease}; do
    case $cfg in
      alone) g_run alone normal normal infer; g_run alone normal normal trainer ;;
      plain) g_run plain normal normal infer trainer ;;
      arb | arbhigh | arblease)
        pol=fair pi=normal pt=normal
        lines=("policy: fair")
        if [[ $cfg == arbhigh ]]; then
          pol=priority pi=high pt=low
          lines=("policy: priority")
        fi
        [[ $cfg == arblease ]] && lines+=("gating: always")
        arbiter_start "$pol" --config-file "$(arbiter_config "g-$cfg" "${lines[@]}")" && {
          g_run "$cfg" "$pi" "$pt" infer trainer
          arbiter_stop "g-$cfg"
        }
        ;;
      *) echo "bad SLICER_G_CFGS item: $cfg"; exit 2 ;;
    esac
  done
  unset INFER_GO
fi
say "done"
