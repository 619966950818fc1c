#!/usr/bin/env bash
# Issue 13: `slicer run`s started at the same moment with no arbiter running all end on ONE arbiter
# (none fails, none starts a second one on the socket), and a second `slicer arbiter` on a socket
# that one holds exits non-zero with a message while the first keeps serving.
# Usage: slicer_run_race_test.sh SLICER SHIM CLIENT FAKES_DIR
set -u
slicer=$1 shim=$2 client=$3 fakes=$4
tmp=$(mktemp -d)
# `slicer arbiter` processes whose command line names socket $1 (by /proc, not by name).
arbiters() {
  local p a args
  for p in /proc/[0-9]*; do
    mapfile -d "" args 2>/dev/null <"$p/cmdline" || continue
    [[ ${args[1]:-} == arbiter ]] || continue
    for a in "${args[@]}"; do
      if [[ $a == "--socket=$1" || $a == "$1" ]]; then echo "${p#/proc/}"; break; fi
    done
  done
}
cleanup() {
  local p
  for p in $(arbiters "$tmp/xdg/gpu-slicer/arbiter.sock") $(arbiters "$tmp/m/arbiter.sock"); do
    kill -9 "$p" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
printf 'devices:\n  - {uuid: GPU-11111111-1111-1111-1111-111111111111, memoryMiB: 16384}\n' >"$tmp/m.yaml"
export SLICER_SHIM=$shim LD_LIBRARY_PATH=$fakes SLICER_FAKE_NVML=$tmp/m.yaml SLICER_LEDGER_DIR=$tmp
unset SLICER_ARBITER_SOCKET
fails=0
check() { if [[ "$1" == "$2" ]]; then echo "ok: $3"; else echo "FAIL: $3 (got $1, wanted $2)"; fails=$((fails + 1)); fi; }

# ---- 8 concurrent `slicer run --weight 1`, no arbiter yet, a fresh per-user socket dir ----
mkdir -p "$tmp/xdg"
export XDG_RUNTIME_DIR=$tmp/xdg SLICER_RUN_ARBITER_IDLE=4s
sock=$tmp/xdg/gpu-slicer/arbiter.sock
log=$tmp/xdg/gpu-slicer/arbiter.log
n=8
pids=()
for i in $(seq $n); do
  # Each waits for the same starting signal, so that all 8 probe the socket at once.
  (while [[ ! -e $tmp/go ]]; do sleep 0.002; done
   exec "$slicer" run --weight 1 --metrics-port 0 -- "$client" init work:1:1000:4) \
    >"$tmp/run$i.out" 2>&1 &
  pids+=($!)
done
# Every arbiter process that appears on the socket meanwhile. (Each tree runs its kernels for 1 s:
# long enough that its shim, which connects beside the program, is a client before it ends.)
(while [[ ! -e $tmp/done ]]; do arbiters "$sock"; sleep 0.01; done) >"$tmp/seen" &
watcher=$!
sleep 0.3
touch "$tmp/go"
ok=0
for i in $(seq $n); do
  wait "${pids[$((i - 1))]}" && grep -q 'op=work:.* result=0' "$tmp/run$i.out" && ok=$((ok + 1))
done
touch "$tmp/done"
wait $watcher
check $ok $n "all $n concurrent slicer runs exit 0 with their kernels done"
for i in $(seq $n); do
  if ! grep -q 'op=work:.* result=0' "$tmp/run$i.out"; then echo "--- run$i:"; cat "$tmp/run$i.out"; fi
done
started=$(cat "$tmp"/run*.out | grep -c "started an arbiter on $sock")
check "$started" 1 "exactly one of them started an arbiter"
check "$(grep -c 'arbiter_listening' "$log")" 1 "exactly one arbiter listened on the socket (its log)"
check "$(sort -u "$tmp/seen" | grep -c .)" 1 "exactly one arbiter process ever ran on the socket"
hellos=$(grep 'client_hello' "$log" | grep -o ' pid=[0-9]*' | sort -u | grep -c .)
check "$hellos" $n "all $n trees were clients of that arbiter"
live=$(arbiters "$sock" | grep -c .)
check "$live" 1 "one arbiter is left running (until idle), not more"
[[ -S $sock ]]; check $? 0 "its socket is in place"
if ((started != 1 || live != 1)); then echo "--- $log:"; cat "$log"; fi
for _ in $(seq 100); do [[ -z $(arbiters "$sock") ]] && break; sleep 0.1; done
check "$(arbiters "$sock" | grep -c .)" 0 "it exits once idle"
[[ ! -e $sock ]]; check $? 0 "and removes its socket"
# The next one starts a fresh arbiter on the same socket (the lock files stay, unlocked).
out=$("$slicer" run --weight 1 --metrics-port 0 -- "$client" init launch:2:1000000 2>&1)
check $? 0 "a later slicer run works"
[[ "$out" == *"started an arbiter on $sock"* ]]; check $? 0 "it starts a fresh arbiter"

# An arbiter that exits at once (its socket path is too long to bind) is reported at once, not
# after the whole wait for an answer.
long=$tmp/$(printf 'd%.0s' $(seq 120))/arbiter.sock
t0=$SECONDS
out=$(SLICER_ARBITER_SOCKET=$long "$slicer" run --weight 1 --metrics-port 0 -- true 2>&1)
check $? 2 "slicer run fails when the arbiter it starts cannot serve"
[[ "$out" == *"cannot start an arbiter on $long: it exited without answering"* ]]
check $? 0 "and says so: $out"
((SECONDS - t0 < 10)); check $? 0 "without waiting the whole bound ($((SECONDS - t0)) s)"

# ---- a second `slicer arbiter` on a socket that one holds ----
S=$tmp/m/arbiter.sock
arb=(--socket "$S" --attribution none --policy priority --metrics-port 0)
# The socket's lock held by another process that does not listen yet (an arbiter starting): a new
# arbiter must neither bind the socket nor replace it.
if command -v flock >/dev/null; then
  mkdir -p "$tmp/m"
  exec 9>"$S.lock"
  flock -n 9
  out=$(timeout 5 "$slicer" arbiter "${arb[@]}" 2>&1 9>&-)  # (124: it served instead)
  rc=$?
  exec 9>&-
  [[ $rc -ne 0 && $rc -ne 124 ]]; check $? 0 "an arbiter is refused while another holds the socket's lock (rc $rc)"
  [[ ! -e $S ]]; check $? 0 "and leaves the socket alone"
fi
"$slicer" arbiter "${arb[@]}" >"$tmp/first.log" 2>&1 &
first=$!
for _ in $(seq 250); do [[ -S $S ]] && break; sleep 0.02; done
[[ -S $S ]]; check $? 0 "the first arbiter serves $S"
out=$(timeout 5 "$slicer" arbiter "${arb[@]}" 2>&1)
rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]]; check $? 0 "a second slicer arbiter on the same socket exits non-zero (rc $rc)"
[[ "$out" == *"another arbiter"*"$S"* ]]; check $? 0 "its message says another arbiter serves $S: $out"
kill -0 $first 2>/dev/null; check $? 0 "the first is still running"
# (long enough for the shim to connect: it does so beside the program, which does not wait)
out=$(SLICER_ARBITER_SOCKET=$S "$slicer" run --weight 1 --metrics-port 0 -- "$client" init launch:20:10000000 2>&1)
check $? 0 "a slicer run on its socket works"
[[ "$out" != *"started an arbiter"* ]]; check $? 0 "and uses it instead of starting one"
for _ in $(seq 100); do grep -q client_hello "$tmp/first.log" && break; sleep 0.02; done
check "$(grep -c client_hello "$tmp/first.log")" 1 "the first arbiter served it"
# A reload (SIGHUP: the arbiter executes itself afresh) keeps the socket's lock: still refused.
kill -HUP $first
for _ in $(seq 250); do [[ $(grep -c arbiter_listening "$tmp/first.log") -ge 2 ]] && break; sleep 0.02; done
check "$(grep -c arbiter_listening "$tmp/first.log")" 2 "after SIGHUP the first arbiter listens again"
if command -v flock >/dev/null; then
  flock -n "$S.lock" true
  check $? 1 "the reloaded arbiter still holds the socket's lock"
fi
timeout 5 "$slicer" arbiter "${arb[@]}" >/dev/null 2>&1
rc=$?
[[ $rc -ne 0 && $rc -ne 124 ]]; check $? 0 "a second one is still refused after the reload"
kill -0 $first 2>/dev/null; check $? 0 "the first is still running after the reload"
# Killed, it leaves a stale socket file and no lock: a new arbiter replaces it.
kill -9 $first
wait $first 2>/dev/null
[[ -S $S ]]; check $? 0 "kill -9 leaves a stale socket file"
"$slicer" arbiter "${arb[@]}" >"$tmp/third.log" 2>&1 &
third=$!
for _ in $(seq 250); do grep -qs arbiter_listening "$tmp/third.log" && break; sleep 0.02; done
grep -q arbiter_listening "$tmp/third.log"; check $? 0 "a new arbiter replaces the stale socket"
kill $third
wait $third
check $? 0 "it stops on SIGTERM"
[[ ! -e $S ]]; check $? 0 "and removes its socket"
exit $((fails > 0))
