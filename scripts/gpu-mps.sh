#!/usr/bin/env bash
# MPS on a real GPU (issue 14), in one or two calls on the GPU machine. Every case is run against
# plain driver time-slicing, and the sizing cases against NVIDIA's equal split, in the same call.
# The MPS control daemon is the driver's own nvidia-cuda-mps-control, kept by `slicer
# mps-daemon --compute-mode=keep` (the GPU machine's compute mode must not change; MPS runs in
# DEFAULT mode as well) with its pipe under $W/mps/<uuid>/pipe, as on a node.
#
# Usage: scripts/gpu-mps.sh --pack [BUILD_DIR]   (here: the slicer binary and its libraries to
#                                                  out/carry, as scripts/gpu-arbiter.sh --pack)
#        scripts/gpu-mps.sh [PARTS]              (GPU machine; PARTS a comma list, default
#                                                  build,life,mem,crash,sat,models)
#   build   libslicer.so (SLICER_DAEMONS=OFF), bench/mps/fault.cu and tests/gpu/runtime_cap.cu
#   life    the real control daemon under mps-daemon: time to ready; its control daemon SIGKILLed
#           while a client runs (what the client sees, how long until ready again, which MPS
#           processes are left); a client after the restart; at the end of every call SIGTERM
#           (quit: no MPS process may be left)
#   mem     a cap of 8 GiB: `slicer run --mps --memory 8GiB` (shim + MPS's pinned-memory limit)
#           against MPS's CUDA_MPS_PINNED_DEVICE_MEM_LIMIT alone: what cudaMemGetInfo and
#           torch.cuda.mem_get_info report, where allocation fails and with which error
#   crash   3 MLP inference clients and a client that faults (bench/mps/fault.cu) 2.5 s into the
#           run: under MPS and under plain time-slicing; then a fresh client under MPS
#   kill    4 MLP clients under `slicer run --mps`, observed by a `slicer arbiter`; one is
#           SIGKILLed 2.5 s in (a crash that is not a GPU fault): the 3 others must run their
#           window, the arbiter report the client gone (log, /metrics before and after)
#   sat     2 saturating trainers (bf16 matmuls): plain; MPS equal split (50/50 threads);
#           `slicer run --mps` with 3 and 1 of 4 replicas' sizing (75/25 threads)
#   models  bench/arbiter/infer_loop.py's models (SLICER_MPS_MODELS, default "mlp resnet50 bert
#           gpt2"), 4 processes each: alone (1), plain, mpsfree (MPS, no limits), mpseq (NVIDIA's
#           equal split: 25% threads and a quarter of the memory each, no shim), slicer (`slicer
#           run --mps` with one of 4 replicas' sizing: the same limits, plus the shim's cap),
#           observed (the same, each client reporting to a `slicer arbiter` observe-only, as
#           Allocate sets it up on a node; its /metrics scraped in mid-window: per-pod metrics
#           under MPS, and what reporting costs against the slicer row)
#   bound   the desired file bounds the GPU to threads=25 (what the plugin writes for replicas: 4
#           with one replica per container): a saturating trainer alone under plain, then under
#           MPS asking for 100 % and for 10 % of the threads itself (a client cannot raise the
#           control daemon's default, only lower it). Its own call: the bound is set before the
#           first MPS server, and holds for the whole call.
#   SLICER_TORCH_SECONDS (8): each PyTorch run's measured window.
# Output under $OUT (default out/gpu-mps): results.txt (one key=value line per process or
# check), summary.md (bench/mps/report.py), logs.tar.gz. $W persists between calls on a warm
# machine, so `build` is needed only in the first.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ ${1:-} == --pack ]]; then
  exec scripts/gpu-arbiter.sh --pack "${2:-build}"
fi

parts=${1:-build,life,mem,crash,sat,models}  # bound: in a call of its own
OUT=${OUT:-$PWD/out/gpu-mps}
mkdir -p "$OUT"
W=${SLICER_MPS_WORK:-/tmp/slicer-mps-bench}
mkdir -p "$W"
TD=${SLICER_TORCH_SECONDS:-8}
CARRY=${SLICER_CARRY:-$PWD/out/carry}
RES=$OUT/results.txt
: >"$RES"
export PATH=$PATH:/usr/local/nvidia/bin PYTHONUNBUFFERED=1
export SLICER_SHIM=$W/build/libslicer.so
# The carried slicer needs its libraries; what it runs must not get them (a CUDA image's own
# LD_LIBRARY_PATH is given back to the command).
ORIG_LD=${LD_LIBRARY_PATH:-}
slicer() { LD_LIBRARY_PATH=$CARRY/lib "$CARRY/slicer" "$@"; }
# srun FLAGS... -- CMD...: `slicer run --mps FLAGS -- CMD`.
srun() {
  local flags=()
  while [[ $1 != -- ]]; do flags+=("$1"); shift; done
  shift
  slicer run --mps "${flags[@]}" -- env LD_LIBRARY_PATH="$ORIG_LD" "$@"
}
say() { echo "== $(date +%T) $*"; }
has() { [[ ",$parts," == *",$1,"* ]]; }
rec() { echo "$*" | tee -a "$RES"; }
now_ns() { python3 -c "import time; print(time.monotonic_ns() + int(${1:-0} * 1e9))"; }
mps_procs() { pgrep -c -f 'nvidia-cuda-mps-(control|server)' || true; }

MPSD_PID=
finish() {
  if [[ -n $MPSD_PID ]]; then
    kill -TERM "$MPSD_PID" 2>/dev/null
    wait "$MPSD_PID" 2>/dev/null
    for _ in $(seq 50); do (($(mps_procs) == 0)) && break; sleep 0.1; done
    rec "life: after_sigterm mps_processes=$(mps_procs) state_files=$(compgen -G "$W/mps/*/state" | wc -l) left=\"$(pgrep -a -f 'nvidia-cuda-mps-(control|server)' | tr '\n' ';')\" stopped=\"$(grep -o 'event=mps_daemon_stopped.*' "$W/mps-daemon.log" | head -1)\""
  fi
  python3 bench/mps/report.py "$RES" "$OUT/summary.md" "$OUT/mps.png" >"$W/report.log" 2>&1 ||
    tail -5 "$W/report.log"
  cp "$W"/mps/*/log/*.log "$W/" 2>/dev/null
  tar -C "$W" --exclude=build --exclude=mps -czf "$OUT/logs.tar.gz" . 2>/dev/null
  [[ -f $OUT/summary.md ]] && cat "$OUT/summary.md"
}
trap finish EXIT
trap 'exit 143' TERM

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1
  command -v nvidia-cuda-mps-control || echo "no nvidia-cuda-mps-control in PATH"
  uname -r
} | sed 's/^/env: /' | tee -a "$RES"
if [[ $(nvidia-smi --query-gpu=compute_mode --format=csv,noheader | head -1 | tr -d ' ') != Default ]]; then
  rec "env: the compute mode is not Default: the MPS results below may not hold"
fi

if has build; then
  say "build: libslicer.so, fault, runtime_cap"
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  { cmake -S . -B "$W/build" "${gen[@]}" -DSLICER_DAEMONS=OFF -DSLICER_TESTS=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build "$W/build" -j"$(nproc)" --target slicer_shim &&
    nvcc -O2 -gencode=arch=compute_90,code=sm_90 bench/mps/fault.cu -o "$W/fault" &&
    nvcc -O2 -gencode=arch=compute_90,code=sm_90 tests/gpu/runtime_cap.cu -o "$W/runtime_cap"; } \
    >"$W/build.log" 2>&1 || { tail -30 "$W/build.log"; echo "BUILD FAILED"; exit 1; }
fi
[[ -f $SLICER_SHIM && -x $W/fault ]] || { echo "not built: run the build part first"; exit 1; }
slicer mps-daemon --help >/dev/null 2>&1 || { echo "the carried slicer does not run"; slicer mps-daemon --help; exit 1; }

# ---- the MPS control daemon, kept by slicer mps-daemon ----
UUID=$(nvidia-smi --query-gpu=uuid --format=csv,noheader | head -1)
ROOT=$W/mps
PIPE=$ROOT/$UUID/pipe
STATE=$ROOT/$UUID/state
phase() { sed -n 's/^phase=\([a-z]*\).*/\1/p' "$STATE" 2>/dev/null; }
state_pid() { sed -n 's/.* pid=\([0-9]*\).*/\1/p' "$STATE" 2>/dev/null; }
wait_phase() {  # PHASE SECONDS: seconds it took (or "timeout")
  local t0 t
  t0=$(date +%s.%N)
  for _ in $(seq $(($2 * 20))); do
    if [[ $(phase) == "$1" ]]; then
      t=$(date +%s.%N)
      python3 -c "print(f'{$t - $t0:.2f}')"
      return 0
    fi
    sleep 0.05
  done
  echo timeout
  return 1
}
if ! has build || [[ $parts != build ]]; then
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  if has bound; then
    printf '%s threads=25\n' "$UUID" >"$ROOT/desired"
  else
    printf '%s\n' "$UUID" >"$ROOT/desired"
  fi
  # exec: $! must be the mps-daemon itself (SIGTERM at the end goes to it), not a subshell.
  (LD_LIBRARY_PATH=$CARRY/lib exec "$CARRY/slicer" mps-daemon --mps-root "$ROOT" --compute-mode keep \
    --tick 100 >"$W/mps-daemon.log" 2>&1) &
  MPSD_PID=$!
  rec "life: ready_after_s=$(wait_phase ready 60) state=\"$(cat "$STATE" 2>/dev/null)\""
  [[ $(phase) == ready ]] || { tail -20 "$W/mps-daemon.log"; exit 1; }
fi

# ---- clients ----
# client CASE CFG NAME MODE CMD...: one process in the background; its result line goes to $RES.
#   MODE plain: no MPS; free: MPS, no limits; eq: MPS, threads $THREADS and memory $MEM_MIB MiB
#   through MPS's own variables (NVIDIA's plugin's way); slicer: `slicer run --mps --threads
#   $THREADS --memory ${MEM_MIB}MiB` (MPS's variables and the shim's cap).
pids=()
client() {
  local c=$1 cfg=$2 name=$3 mode=$4
  shift 4
  (
    local pre=()
    case $mode in
      plain) ;;
      free) export CUDA_MPS_PIPE_DIRECTORY=$PIPE ;;
      eq)
        export CUDA_MPS_PIPE_DIRECTORY=$PIPE CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=$THREADS \
          CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=${MEM_MIB}M
        ;;
      slicer | observed)
        export CUDA_MPS_PIPE_DIRECTORY=$PIPE SLICER_LEDGER_DIR=$W
        [[ $mode == observed ]] && export SLICER_ARBITER_SOCKET=$W/arbiter/arbiter.sock
        pre=(env LD_LIBRARY_PATH="$CARRY/lib" "$CARRY/slicer" run --mps --threads "$THREADS"
          --memory "${MEM_MIB}MiB" -- env LD_LIBRARY_PATH="$ORIG_LD")
        ;;
    esac
    line=$(timeout 150 "${pre[@]}" "$@" 2>>"$W/$c-$cfg-$name.err")
    echo "case=$c cfg=$cfg client=$name mode=$mode threads=${THREADS:-} $line" >>"$RES"
  ) &
  pids+=($!)
}
join() { wait "${pids[@]}"; pids=(); }
# A start barrier for the PyTorch clients started next (bench/arbiter/infer_loop.py's INFER_GO):
# start_all N writes the start, 0.5 s ahead, once N of them are warm (or 90 s have passed).
IL=${SLICER_INFER_LOOP:-python3 bench/arbiter/infer_loop.py}
barrier() {
  mkdir -p "$W/go"
  export INFER_GO=$W/go/$RANDOM$RANDOM
  S=$(now_ns 90)
}
start_all() {
  local t=0
  while (($(compgen -G "$INFER_GO.ready.*" | wc -l) < $1 && t < 900)); do sleep 0.1; ((t++)); done
  now_ns 0.5 >"$INFER_GO.tmp" && mv "$INFER_GO.tmp" "$INFER_GO"
}
GPU_MIB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)

if has life; then
  say "life: the control daemon SIGKILLed under a running client"
  before=$(pgrep -a -f 'nvidia-cuda-mps-(control|server)' | tr '\n' ';')
  barrier
  THREADS=100 MEM_MIB=8192 client life slicer running slicer $IL mlp "$S" 6
  start_all 1
  sleep 2.5
  pid=$(state_pid)
  during=$(pgrep -a -f 'nvidia-cuda-mps-(control|server)' | tr '\n' ';')
  kill -KILL "$pid"
  down=$(wait_phase down 10)
  up=$(wait_phase ready 60)
  after=$(pgrep -a -f 'nvidia-cuda-mps-(control|server)' | tr '\n' ';')
  join
  rec "life: killed_pid=$pid down_after_s=$down ready_again_after_s=$up before=\"$before\" during=\"$during\" after=\"$after\" state=\"$(cat "$STATE")\""
  barrier
  THREADS=100 MEM_MIB=8192 client life slicer after-restart slicer $IL mlp "$S" 3
  start_all 1
  join
  rec "life: after_client mps_processes=$(mps_procs) $(pgrep -a -f 'nvidia-cuda-mps-server' | tr '\n' ';')"
fi

if has mem; then
  say "mem: a cap of 8 GiB"
  cap=$((8 << 30))
  export CUDA_MPS_PIPE_DIRECTORY=$PIPE
  cu() {  # TAG PREFIX...: runtime_cap fill under MPS
    local tag=$1 out rc
    shift
    out=$("$@" "$W/runtime_cap" fill $cap 512 2>&1)
    rc=$?
    rec "mem: tag=$tag rc=$rc out=\"$(tr '\n' ' ' <<<"$out" | cut -c1-600)\""
  }
  cu mps-limit-only env CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=8192M
  cu slicer srun --memory 8GiB --
  torch_probe='import torch,sys
f,t=torch.cuda.mem_get_info(); print(f"mem_get_info_total={t}", end=" ")
try:
    x=torch.empty(10<<30,dtype=torch.uint8,device="cuda"); print("alloc_10GiB=ok", end=" ")
except torch.OutOfMemoryError as e: print("alloc_10GiB=OutOfMemoryError", end=" ")
print()'
  rec "mem: tag=torch-mps-limit-only $(CUDA_MPS_PINNED_DEVICE_MEM_LIMIT=0=8192M python3 -c "$torch_probe" 2>&1 | tail -1)"
  rec "mem: tag=torch-slicer $(srun --memory 8GiB -- python3 -c "$torch_probe" 2>&1 | tail -1)"
  out=$(srun --memory 8GiB -- python3 tests/gpu/torch_cap.py $cap 2>&1)
  rec "mem: tag=torch_cap.py-slicer rc=$? out=\"$(tr '\n' ' ' <<<"$out" | cut -c1-700)\""
  unset CUDA_MPS_PIPE_DIRECTORY
fi

if has crash; then
  for mode in slicer plain; do
    say "crash: a faulting client among 3 inference clients ($mode)"
    barrier
    for i in 1 2 3; do THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client crash "$mode" "mlp-$i" "$mode" $IL mlp "$S" "$TD"; done
    start_all 3
    sleep 0.5
    THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client crash "$mode" faulter "$mode" "$W/fault" 2500
    join
    if [[ $mode == slicer ]]; then
      rec "crash: after mps_state=\"$(cat "$STATE")\" mps_processes=$(mps_procs)"
      wait_phase ready 60 >/dev/null
      barrier
      THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client crash slicer-after fresh slicer $IL mlp "$S" 3
      start_all 1
      join
    fi
  done
fi

if has sat; then
  say "sat: 2 saturating trainers"
  barrier; client sat alone trainer plain $IL trainer "$S" "$TD"; start_all 1; join
  barrier
  client sat plain A plain $IL trainer "$S" "$TD"
  client sat plain B plain $IL trainer "$S" "$TD"
  start_all 2; join
  barrier
  THREADS=50 MEM_MIB=$((GPU_MIB / 2)) client sat mpseq A eq $IL trainer "$S" "$TD"
  THREADS=50 MEM_MIB=$((GPU_MIB / 2)) client sat mpseq B eq $IL trainer "$S" "$TD"
  start_all 2; join
  barrier
  THREADS=75 MEM_MIB=$((GPU_MIB * 3 / 4)) client sat slicer A slicer $IL trainer "$S" "$TD"
  THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client sat slicer B slicer $IL trainer "$S" "$TD"
  start_all 2; join
fi

if has bound; then
  say "bound: threads=25 on the control daemon; clients asking for 100 % and 10 %"
  rec "bound: $(grep -o 'event=mps_threads_set.*' "$W/mps-daemon.log" | head -1)"
  barrier; client bound plain trainer plain $IL trainer "$S" "$TD"; start_all 1; join
  barrier; THREADS=100 MEM_MIB=$GPU_MIB client bound ask100 trainer eq $IL trainer "$S" "$TD"; start_all 1; join
  barrier; THREADS=10 MEM_MIB=$GPU_MIB client bound ask10 trainer eq $IL trainer "$S" "$TD"; start_all 1; join
  rec "bound: default_now=$(echo get_default_active_thread_percentage | CUDA_MPS_PIPE_DIRECTORY=$PIPE nvidia-cuda-mps-control 2>&1)"
fi

# The node's arbiter, standalone (no kubelet here): MPS clients report to it observe-only.
ARB_PID=
start_arbiter() {
  [[ -n $ARB_PID ]] && return
  mkdir -p "$W/arbiter"
  (LD_LIBRARY_PATH=$CARRY/lib exec "$CARRY/slicer" arbiter --socket "$W/arbiter/arbiter.sock" \
    --attribution none --metrics-port 9477 --metrics-address 127.0.0.1 >"$W/arbiter.log" 2>&1) &
  ARB_PID=$!
  sleep 0.5
}
scrape() {  # TAG: the arbiter's per-client lines, one results line each
    python3 - "$1" >>"$RES" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=5).read().decode()
keep = ("slicer_arbiter_observed_clients{", "slicer_arbiter_clients{", "slicer_arbiter_memory_used_bytes{",
        "slicer_arbiter_memory_cap_bytes{", "slicer_arbiter_gpu_seconds_total{", "slicer_arbiter_gpu_clients{",
        "slicer_arbiter_weight{")
for line in text.splitlines():
    if line.startswith(keep):
        print(f"metrics: tag={sys.argv[1]} {line}")
PY
}

if has kill; then
  say "kill: one of 4 MPS clients SIGKILLed"
  start_arbiter
  barrier
  for i in 1 2 3; do THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client kill observed "mlp-$i" observed $IL mlp "$S" "$TD"; done
  THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client kill observed victim observed $IL mlp "$S" $((TD + 1))
  start_all 4
  sleep 2.5
  scrape kill-before || rec "metrics: tag=kill-before scrape failed"
  victim=$(pgrep -f "^python3 bench/arbiter/infer_loop.py mlp $S $((TD + 1))" | head -1)
  kill -KILL "$victim"
  sleep 1
  scrape kill-after || rec "metrics: tag=kill-after scrape failed"
  join
  rec "kill: victim_pid=$victim mps_state=\"$(cat "$STATE")\" gone=\"$(grep 'event=client_gone' "$W/arbiter.log" | grep -v 'why=bye' | tr '\n' ';' | cut -c1-400)\""
fi

if has models; then
  start_arbiter
  for m in ${SLICER_MPS_MODELS:-mlp resnet50 bert gpt2}; do
    for cfg in alone plain mpsfree mpseq slicer observed; do
      say "models: $m $cfg"
      n=4 mode=$cfg
      case $cfg in
        alone) n=1 mode=plain ;;
        mpsfree) mode=free ;;
        mpseq) mode=eq ;;
      esac
      barrier
      for i in $(seq $n); do THREADS=25 MEM_MIB=$((GPU_MIB / 4)) client models "$cfg" "$m-$i" "$mode" $IL "$m" "$S" "$TD"; done
      start_all $n
      if [[ $cfg == observed ]]; then
        sleep $((TD / 2 + 1))
        scrape "$m-mid" || rec "metrics: tag=$m-mid scrape failed"
      fi
      join
    done
  done
  scrape after || rec "metrics: tag=after scrape failed"
fi
if [[ -n $ARB_PID ]]; then
  kill -TERM "$ARB_PID" 2>/dev/null
  wait "$ARB_PID" 2>/dev/null
fi
say done
