#!/usr/bin/env bash
# `slicer arbiter` and SIGHUP: a good new config takes effect in place (same PID, same socket and
# /metrics port), a bad one is refused with a message and the running one stays, SIGTERM still
# stops it cleanly. Usage: arbiter_reload_test.sh SLICER
set -u
slicer=$1
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

printf 'arbiter:\n  policy: priority\n' >"$tmp/arbiter.yaml"
kill -HUP "$pid"
sleep 0.5
check "$(policy)" priority "SIGHUP with a good config: the new policy is in force"
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
if ((fails)); then echo "--- arbiter log"; cat "$tmp/log"; exit 1; fi
