#!/usr/bin/env bash
# `slicer arbiter` and SIGHUP: a good new config takes effect in place (same PID, same socket and
# /metrics port), a bad one is refused with a message and the running one stays, SIGTERM still
# stops it cleanly. With the shim, its test client and the fakes: a process working under the
# arbiter across the reload keeps running, reconnects, and ends with exit 0.
# Usage: arbiter_reload_test.sh SLICER [SHIM CLIENT FAKES_DIR]
set -u
slicer=$1 shim=${2:-} client=${3:-} fakes=${4:-}
tmp=$(mktemp -d)
pid=
trap '[[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
fails=0
check() { if [[ "$1" == "$2" ]]; then echo "ok: $3"; else echo "FAIL: $3 (got $1, wanted $2)"; fails=$((fails + 1)); fi; }
status() { "$slicer" status --endpoint "http://127.0.0.1:$port/metrics" 2>&1 | head -1; }
# The policy the running arbiter reports, once it answers (up to 5 s).
policy() {
  local line
  for _ in $(seq 50); do
    line=$(status)
    if [[ "$line" == *policy=* ]]; then sed 's/.*policy=\([a-z]*\).*/\1/' <<<"$line"; return; fi
    sleep 0.1
  done
  echo "none"
}

printf 'arbiter:\n  policy: fair\n' >"$tmp/arbiter.yaml"
# A random port; another one if that one is taken (the arbiter exits 1 when it cannot listen).
for _ in $(seq 20); do
  port=$((20000 + RANDOM % 40000))
  "$slicer" arbiter --socket "$tmp/arbiter.sock" --attribution none --metrics-address 127.0.0.1 \
    --metrics-port "$port" --config-file "$tmp/arbiter.yaml" >"$tmp/log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do grep -q metrics_listening "$tmp/log" && break 2; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
done
check "$(policy)" fair "the arbiter starts with the file's policy"

# A client working through the reload (3 s of 1 ms kernels on the fake driver).
cpid=
if [[ -n "$client" ]]; then
  printf 'devices:\n  - {uuid: GPU-11111111-1111-1111-1111-111111111111, memoryMiB: 16384}\n' >"$tmp/m.yaml"
  LD_PRELOAD=$shim LD_LIBRARY_PATH=$fakes SLICER_FAKE_NVML=$tmp/m.yaml SLICER_LEDGER_DIR=$tmp \
    SLICER_CONTAINER_ID=reload SLICER_ARBITER_SOCKET=$tmp/arbiter.sock SLICER_LOG=debug \
    "$client" init work:3:1000:4 >"$tmp/client.out" 2>&1 &
  cpid=$!
  for _ in $(seq 50); do [[ "$(status)" == *clients=1* ]] && break; sleep 0.1; done
  [[ "$(status)" == *clients=1* ]]; check $? 0 "a client is connected before the reload"
fi

printf 'arbiter:\n  policy: priority\n' >"$tmp/arbiter.yaml"
kill -HUP "$pid"
sleep 0.5
check "$(policy)" priority "SIGHUP with a good config: the new policy is in force"
if [[ -n "$cpid" ]]; then
  wait "$cpid"; check $? 0 "the client worked through the reload and exited 0"
  grep -q 'connects=2' "$tmp/client.out"; check $? 0 "the client reconnected to the reloaded arbiter"
fi
kill -0 "$pid" 2>/dev/null; check $? 0 "same process (PID $pid) after the reload"
[[ -S "$tmp/arbiter.sock" ]]; check $? 0 "the socket is there again"

printf 'arbiter:\n  policy: fastest\n' >"$tmp/arbiter.yaml"
kill -HUP "$pid"
sleep 0.5
kill -0 "$pid" 2>/dev/null; check $? 0 "SIGHUP with a bad config: still running"
check "$(policy)" priority "the running config stays in force"
grep -q 'reload_refused.*fastest' "$tmp/log"; check $? 0 "the refusal names the bad value"

kill -TERM "$pid"
wait "$pid"; check $? 0 "SIGTERM: exit 0"
pid=
[[ ! -e "$tmp/arbiter.sock" ]]; check $? 0 "SIGTERM: the socket is removed"
if ((fails)); then echo "--- arbiter log"; cat "$tmp/log"; [[ -f $tmp/client.out ]] && { echo "--- client"; tail -5 "$tmp/client.out"; }; exit 1; fi
