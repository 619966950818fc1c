#!/usr/bin/env bash
# The end-to-end scenarios, against the cluster `scripts/e2e.sh up` started. Each checks what a
# user would check, with kubectl (and the node's files where the user would look there).
#   tests/e2e/scenarios.sh [NAME...]    default: all, in this order:
#     capacity     node allocatable nvidia.com/gpu = GPUs x replicas; NFD feature labels; the
#                  DaemonSet runs under its own service account with read-only RBAC
#     scheduling   a Deployment of one-share pods: the real scheduler places capacity of them,
#                  the rest stay Pending as Unschedulable for Insufficient nvidia.com/gpu
#     container    inside a 2-share pod: NVIDIA_VISIBLE_DEVICES, the shim in /etc/ld.so.preload
#                  and mapped, the fake libcuda reports the k/N cap and refuses past it
#     attribution  the arbiter's /metrics name that pod (kubelet PodResources attribution), with
#                  its memory, cap and weight (its replicas; a pod annotation's weight)
#     relabel      nvidia.com/device-plugin.config=ts-2 on the node switches config, and back
#     restart      kubelet restart: the plugin re-registers; plugin pod deleted: DaemonSet
#                  brings it back; both times a new pod gets a share
#     xid          an XID in the fake NVML's events file lowers allocatable by one GPU's
#                  replicas, recovery restores it
#     mps          nvidia.com/device-plugin.config=mps-4: the chart's MPS DaemonSet starts one
#                  (fake) control daemon per GPU, allocatable comes back once they answer, a
#                  2-share pod sees its GPU's live pipe folder and its sizing and the arbiter
#                  observes it (metrics named by PodResources, never leased), a killed daemon
#                  takes its GPU's shares away until it is back; relabelled back, the daemons
#                  stop and the compute modes are restored
set -uo pipefail
source "$(dirname "$0")/lib.sh"

NS=e2e
CAP=$((E2E_GPUS * E2E_REPLICAS))
FEATURES=/etc/kubernetes/node-feature-discovery/features.d/gpu-slicer
failures=()
current=""

pass() { echo "PASS: [$current] $*"; }
fail() { echo "FAIL: [$current] $*"; failures+=("[$current] $*"); }
# expect WHAT GOT WANT
expect() { if [[ $2 == "$3" ]]; then pass "$1: $2"; else fail "$1: got '$2', want '$3'"; fi; }

allocatable() { kubectl get node "$E2E_NODE" -o jsonpath='{.status.allocatable.nvidia\.com/gpu}'; }
# wait_allocatable N SECONDS: until the node's allocatable is N; prints what it was at the end.
wait_allocatable() {
  local want=$1 t=${2:-60} got i
  for ((i = 0; i < t; i++)); do
    got=$(allocatable)
    [[ $got == "$want" ]] && break
    sleep 1
  done
  echo "$got"
}
plugin_pod() {
  kubectl -n gpu-slicer get pods -l app.kubernetes.io/name=gpu-slicer \
    --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}' 2>/dev/null
}

# share_pod NAME SHARES [CMD...]: a pod of the gpu-slicer image (Debian, with sh) asking for
# SHARES nvidia.com/gpu, with the node's driver and the test program mounted in.
share_pod() {
  local name=$1 shares=$2
  shift 2
  local cmd='["sleep", "infinity"]'
  if (($# > 0)); then # a JSON list of the arguments
    cmd=""
    local a
    for a in "$@"; do a=${a//\\/\\\\}; cmd+="${cmd:+, }\"${a//\"/\\\"}\""; done
    cmd="[$cmd]"
  fi
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {app: e2e-share}, annotations: {${ANNOTATIONS:-}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: $E2E_IMAGE
    imagePullPolicy: Never
    command: $cmd
    env:
    # What the NVIDIA container runtime would provide: the driver's libraries (here the fakes).
    - {name: LD_LIBRARY_PATH, value: /driver/usr/lib/x86_64-linux-gnu}
    - {name: SLICER_FAKE_NVML, value: /driver/etc/fake-gpus/machine.yaml}
    resources:
      limits: {nvidia.com/gpu: $shares}
    volumeMounts:
    - {name: driver, mountPath: /driver, readOnly: true}
    - {name: assets, mountPath: /e2e, readOnly: true}
  volumes:
  - {name: driver, hostPath: {path: $E2E_DRIVER_ROOT, type: Directory}}
  - {name: assets, hostPath: {path: $E2E_STATE/assets, type: Directory}}
YAML
}
wait_running() { kubectl -n "$NS" wait --for=condition=Ready "pod/$1" --timeout="${2:-90}s" >/dev/null; }
delete_pods() { kubectl -n "$NS" delete pods "$@" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1; }

# --- scenarios ------------------------------------------------------------------------------
capacity() {
  local got
  got=$(wait_allocatable "$CAP" 90)
  expect "allocatable nvidia.com/gpu ($E2E_GPUS GPUs x $E2E_REPLICAS)" "$got" "$CAP"
  expect "capacity nvidia.com/gpu" "$(kubectl get node "$E2E_NODE" -o jsonpath='{.status.capacity.nvidia\.com/gpu}')" "$CAP"
  if [[ -f $FEATURES ]]; then
    expect "feature label nvidia.com/gpu.count" "$(sed -n 's/^nvidia.com\/gpu.count=//p' "$FEATURES")" "$E2E_GPUS"
    expect "feature label nvidia.com/gpu.replicas" "$(sed -n 's/^nvidia.com\/gpu.replicas=//p' "$FEATURES")" "$E2E_REPLICAS"
    expect "feature label nvidia.com/gpu.product" "$(sed -n 's/^nvidia.com\/gpu.product=//p' "$FEATURES")" "Tesla-T4-SHARED"
    expect "feature label nvidia.com/gpu.sharing-strategy" "$(sed -n 's/^nvidia.com\/gpu.sharing-strategy=//p' "$FEATURES")" "time-slicing"
  else
    fail "no NFD feature file $FEATURES"
  fi
  local pod sa
  pod=$(plugin_pod)
  sa=$(kubectl -n gpu-slicer get pod "$pod" -o jsonpath='{.spec.serviceAccountName}' 2>/dev/null)
  expect "plugin pod's service account" "$sa" "gpu-slicer"
  expect "the service account may watch nodes" \
    "$(kubectl auth can-i watch nodes --as=system:serviceaccount:gpu-slicer:gpu-slicer 2>/dev/null)" yes
  expect "the service account may not patch nodes" \
    "$(kubectl auth can-i patch nodes --as=system:serviceaccount:gpu-slicer:gpu-slicer 2>/dev/null)" no
}

scheduling() {
  local n=$((CAP + 2)) i running pending
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: one-share}
spec:
  replicas: $n
  selector: {matchLabels: {app: one-share}}
  template:
    metadata: {labels: {app: one-share}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: main, image: $E2E_IMAGE, imagePullPolicy: Never, command: [sleep, infinity],
         resources: {limits: {nvidia.com/gpu: 1}}}
YAML
  for ((i = 0; i < 180; i++)); do
    running=$(kubectl -n "$NS" get pods -l app=one-share --field-selector=status.phase=Running -o name | wc -l)
    pending=$(kubectl -n "$NS" get pods -l app=one-share --field-selector=status.phase=Pending -o name | wc -l)
    ((running == CAP && pending == 2)) && break
    sleep 1
  done
  expect "one-share pods Running" "$running" "$CAP"
  expect "one-share pods Pending" "$pending" 2
  sleep 5 # and no further: nothing else gets placed
  expect "one-share pods Running after 5 s more" \
    "$(kubectl -n "$NS" get pods -l app=one-share --field-selector=status.phase=Running -o name | wc -l)" "$CAP"
  local p reason msg
  for p in $(kubectl -n "$NS" get pods -l app=one-share --field-selector=status.phase=Pending -o name); do
    reason=$(kubectl -n "$NS" get "$p" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].reason}')
    msg=$(kubectl -n "$NS" get "$p" -o jsonpath='{.status.conditions[?(@.type=="PodScheduled")].message}')
    expect "$p PodScheduled reason" "$reason" Unschedulable
    if [[ $msg == *"Insufficient nvidia.com/gpu"* ]]; then pass "$p: scheduler says: $msg"
    else fail "$p: scheduler message '$msg' lacks 'Insufficient nvidia.com/gpu'"; fi
  done
  # Where the shares went: at most E2E_REPLICAS pods per GPU (each container sees its GPU).
  local per_gpu
  per_gpu=$(for p in $(kubectl -n "$NS" get pods -l app=one-share --field-selector=status.phase=Running -o name); do
    kubectl -n "$NS" exec "$p" -- printenv NVIDIA_VISIBLE_DEVICES
  done | sort | uniq -c | awk '{print $1}' | sort -u | paste -sd, -)
  expect "pods per GPU" "$per_gpu" "$E2E_REPLICAS"
  kubectl -n "$NS" delete deployment one-share --wait=true >/dev/null
  kubectl -n "$NS" wait --for=delete pod -l app=one-share --timeout=90s >/dev/null 2>&1 || true
}

# client_cmd: the test program holding 256 MiB on the pod's GPU and launching a few kernels (the
# shim joins the arbiter at the first launch), until the pod ends. The fake libcuda shows every
# GPU of the machine (the NVIDIA runtime would show only the pod's): it uses the pod's.
client_cmd=(sh -c 'exec /e2e/cuda_client init "device:$(expr "$NVIDIA_VISIBLE_DEVICES" : ".*-0*\([0-9][0-9]*\)$")" alloc:256M launch:4:1000000 hold')

probe_ready() {
  kubectl -n "$NS" get pod probe >/dev/null 2>&1 && return 0
  share_pod probe 2 "${client_cmd[@]}"
  wait_running probe 120
}

container() {
  probe_ready || { fail "pod probe not Running: $(kubectl -n "$NS" describe pod probe | tail -5)"; return; }
  local uuid idx cap out rc
  uuid=$(kubectl -n "$NS" exec probe -- printenv NVIDIA_VISIBLE_DEVICES 2>&1)
  if [[ $uuid =~ ^GPU-e2e00000-0000-0000-0000-0*([0-9]+)$ ]]; then
    idx=${BASH_REMATCH[1]}
    pass "NVIDIA_VISIBLE_DEVICES=$uuid (one GPU, by UUID: 2 shares packed onto one GPU)"
  else
    fail "NVIDIA_VISIBLE_DEVICES='$uuid'"; return
  fi
  out=$(kubectl -n "$NS" exec probe -- cat /etc/ld.so.preload 2>&1)
  expect "/etc/ld.so.preload" "$out" /usr/local/lib/gpu-slicer/libslicer.so
  out=$(kubectl -n "$NS" exec probe -- sh -c 'grep -c libslicer.so /proc/self/maps' 2>&1)
  if [[ $out =~ ^[1-9] ]]; then pass "libslicer.so is mapped into a process of the container"
  else fail "libslicer.so not mapped: $out"; fi
  # 2 of 4 shares of a 15360 MiB T4: 7680 MiB.
  cap=$((15360 * 2 / E2E_REPLICAS * 1024 * 1024))
  out=$(kubectl -n "$NS" exec probe -- /e2e/cuda_client init "device:$idx" info 2>&1)
  if [[ $out == *"op=info result=0 "*"total=$cap"* ]]; then pass "cuMemGetInfo total is the cap ($cap bytes)"
  else fail "cuMemGetInfo: $out (want total=$cap)"; fi
  out=$(kubectl -n "$NS" exec probe -- /e2e/cuda_client init "device:$idx" alloc:6G 2>&1); rc=$?
  expect "6 GiB under the 7.5 GiB cap (exit status)" "$rc" 0
  out=$(kubectl -n "$NS" exec probe -- /e2e/cuda_client init "device:$idx" alloc:6G alloc:2G 2>&1); rc=$?
  if [[ $rc == 2 && $out == *"result=2"* ]]; then pass "6 GiB + 2 GiB past the cap: CUDA_ERROR_OUT_OF_MEMORY"
  else fail "past the cap: exit $rc: $out"; fi
  # The same allocation on the other GPU, which the pod does not hold, is not allowed to pass.
  out=$(kubectl -n "$NS" exec probe -- /e2e/cuda_client init "device:$(( (idx + 1) % E2E_GPUS ))" alloc:1M 2>&1); rc=$?
  if [[ $rc != 0 ]]; then pass "an allocation on a GPU the pod does not hold fails (exit $rc)"
  else fail "an allocation on a GPU the pod does not hold succeeded: $out"; fi
}

attribution() {
  probe_ready || { fail "pod probe not Running"; return; }
  local pod ip metrics i line
  pod=$(plugin_pod)
  ip=$(kubectl -n gpu-slicer get pod "$pod" -o jsonpath='{.status.podIP}')
  # The pod's 256 MiB come with the client's next report (about a second after it joins).
  local mem cap
  for ((i = 0; i < 30; i++)); do
    metrics=$(curl -sf "http://$ip:9400/metrics")
    line=$(grep '^slicer_arbiter_clients{' <<<"$metrics" | grep 'pod="probe"' | grep "namespace=\"$NS\"")
    mem=$(grep '^slicer_arbiter_memory_used_bytes{' <<<"$metrics" | grep 'pod="probe"' | head -1)
    [[ -n $line && $mem == *" 268435456" ]] && break
    sleep 1
  done
  if [[ -n $line ]]; then pass "arbiter metrics name the pod: $line"
  else
    fail "no slicer_arbiter_clients{namespace=\"$NS\",pod=\"probe\"} in http://$ip:9400/metrics: $(grep '^slicer_arbiter_clients' <<<"$metrics" | head -3)"
    echo "  probe's output:"; kubectl -n "$NS" logs probe 2>&1 | sed 's/^/    /'
    echo "  arbiter's log:"; kubectl -n gpu-slicer logs "$pod" -c arbiter 2>&1 | tail -20 | sed 's/^/    /'
  fi
  if [[ $mem == *" 268435456" ]]; then pass "memory the pod holds: $mem"
  else fail "slicer_arbiter_memory_used_bytes for probe: '$mem' (want 268435456)"; fi
  cap=$(grep '^slicer_arbiter_memory_cap_bytes{' <<<"$metrics" | grep 'pod="probe"' | head -1)
  if [[ $cap == *" $((15360 * 2 / E2E_REPLICAS * 1024 * 1024))" ]]; then pass "the pod's cap: $cap"
  else fail "slicer_arbiter_memory_cap_bytes for probe: '$cap'"; fi
  # Its weight is the replicas the kubelet's PodResources says it holds (2).
  line=$(grep '^slicer_arbiter_weight{' <<<"$metrics" | grep 'pod="probe"' | head -1)
  if [[ $line == *" 2" ]]; then pass "weight = the pod's 2 replicas: $line"
  else fail "slicer_arbiter_weight for probe: '$line' (want 2)"; fi
  # A pod's gpu-slicer.io/weight annotation, read from the API server under the chart's RBAC.
  ANNOTATIONS='gpu-slicer.io/weight: "3"' share_pod weighted 1 "${client_cmd[@]}"
  if wait_running weighted 90; then
    for ((i = 0; i < 30; i++)); do
      line=$(curl -sf "http://$ip:9400/metrics" | grep '^slicer_arbiter_weight{' | grep 'pod="weighted"' | head -1)
      [[ $line == *" 3" ]] && break
      sleep 1
    done
    if [[ $line == *" 3" ]]; then pass "weight from the pod's annotation: $line"
    else fail "slicer_arbiter_weight for pod weighted (annotation 3): '$line'"; fi
  else
    fail "pod weighted did not run"
  fi
  delete_pods weighted
}

relabel() {
  delete_pods probe
  local got
  kubectl label node "$E2E_NODE" nvidia.com/device-plugin.config=ts-2 --overwrite >/dev/null
  got=$(wait_allocatable $((E2E_GPUS * 2)) 60)
  expect "allocatable with config ts-2" "$got" $((E2E_GPUS * 2))
  expect "feature label nvidia.com/gpu.replicas (ts-2)" "$(sed -n 's/^nvidia.com\/gpu.replicas=//p' "$FEATURES")" 2
  kubectl label node "$E2E_NODE" nvidia.com/device-plugin.config- >/dev/null
  got=$(wait_allocatable "$CAP" 60)
  expect "allocatable after the label is removed (default ts-4)" "$got" "$CAP"
}

# gets_a_share NAME: a new one-share pod runs (Allocate works).
gets_a_share() {
  share_pod "$1" 1
  if wait_running "$1" 90; then pass "a new pod ($1) got a share and runs"
  else fail "pod $1 did not run: $(kubectl -n "$NS" describe pod "$1" | tail -5)"; fi
  delete_pods "$1"
}

# How many times the plugin's log says it registered with the kubelet.
registrations() { kubectl -n gpu-slicer logs "$(plugin_pod)" -c device-plugin 2>/dev/null | grep -c 'event=registered '; }

restart() {
  local before after pod got
  before=$(registrations)
  e2e_stop kubelet
  "$e2e_here/cluster.sh" start-kubelet
  e2e_wait 60 "kubelet healthz" curl -sf http://127.0.0.1:10248/healthz || fail "kubelet did not come back"
  local i
  for ((i = 0; i < 60; i++)); do
    after=$(registrations)
    ((after > before)) && break
    sleep 1
  done
  if ((after > before)); then pass "the plugin registered again after the kubelet restart ($before -> $after registrations in its log)"
  else fail "no new registration in the plugin's log after the kubelet restart"; fi
  got=$(wait_allocatable "$CAP" 60)
  expect "allocatable after kubelet restart" "$got" "$CAP"
  gets_a_share after-kubelet-restart

  pod=$(plugin_pod)
  kubectl -n gpu-slicer delete pod "$pod" --wait=true --timeout=60s >/dev/null
  for ((i = 0; i < 90; i++)); do
    after=$(plugin_pod)
    [[ -n $after && $after != "$pod" ]] && kubectl -n gpu-slicer wait --for=condition=Ready "pod/$after" --timeout=2s >/dev/null 2>&1 && break
    sleep 1
  done
  if [[ -n $after && $after != "$pod" ]]; then pass "the DaemonSet replaced plugin pod $pod with $after"
  else fail "no new plugin pod after deleting $pod"; fi
  got=$(wait_allocatable "$CAP" 60)
  expect "allocatable after the plugin pod came back" "$got" "$CAP"
  gets_a_share after-plugin-restart
}

xid() {
  local events=$E2E_DRIVER_ROOT/etc/fake-gpus/events uuid got
  uuid=$(e2e_gpu_uuid 0)
  echo "xid $uuid 79" >>"$events"
  got=$(wait_allocatable $(((E2E_GPUS - 1) * E2E_REPLICAS)) 60)
  expect "allocatable after XID 79 on $uuid" "$got" $(((E2E_GPUS - 1) * E2E_REPLICAS))
  echo "recover $uuid" >>"$events"
  got=$(wait_allocatable "$CAP" 90)
  expect "allocatable after $uuid answers again" "$got" "$CAP"
  # An application XID (13) is not the GPU's fault: nothing changes.
  echo "xid $uuid 13" >>"$events"
  sleep 10
  expect "allocatable 10 s after application XID 13" "$(allocatable)" "$CAP"
  echo "recover $uuid" >>"$events" # the fake NVML marks any XID's GPU lost: leave it answering
}

mps_pod() {
  kubectl -n gpu-slicer get pods -l app.kubernetes.io/name=gpu-slicer-mps-control-daemon \
    --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}' 2>/dev/null
}

# mps_events UUID KIND: how many times the plugin's log says KIND (gpu_healthy or gpu_unhealthy)
# for UUID because of its MPS daemon.
mps_events() {
  kubectl -n gpu-slicer logs "$(plugin_pod)" -c device-plugin 2>/dev/null |
    grep -c "event=$2 uuid=$1 source=mps"
}

# wait_mps_ready UUID N: until UUID's daemon state says ready and the plugin has marked its
# shares healthy because of it more than N times (node allocatable lags the kubelet's device
# manager by its status period, so it cannot show a daemon's start or a restart of a second).
wait_mps_ready() {
  local i
  for ((i = 0; i < 60; i++)); do
    grep -q '^phase=ready ' "/run/nvidia/mps/$1/state" 2>/dev/null &&
      (($(mps_events "$1" gpu_healthy) > $2)) && return 0
    sleep 1
  done
  return 1
}

mps() {
  delete_pods probe
  local root=/run/nvidia/mps modes=/run/nvidia/mps/fake-compute-mode got uuid out pod i before
  if [[ -z $(mps_pod) ]]; then fail "no running MPS control-daemon pod"; return; fi
  kubectl label node "$E2E_NODE" nvidia.com/device-plugin.config=mps-4 --overwrite >/dev/null
  # The plugin has switched when its labels say so; then its shares wait for the daemons.
  for ((i = 0; i < 60; i++)); do
    got=$(sed -n 's/^nvidia.com\/gpu.sharing-strategy=//p' "$FEATURES")
    [[ $got == mps ]] && break
    sleep 1
  done
  expect "feature label nvidia.com/gpu.sharing-strategy" "$got" mps
  for ((i = 0; i < E2E_GPUS; i++)); do
    uuid=$(e2e_gpu_uuid "$i")
    if wait_mps_ready "$uuid" 0; then pass "$uuid: its MPS daemon is ready and its shares healthy"
    else fail "$uuid: MPS daemon not ready: $(cat "$root/$uuid/state" 2>&1)"; fi
  done
  got=$(wait_allocatable "$CAP" 60)
  expect "allocatable with config mps-4" "$got" "$CAP"
  for ((i = 0; i < E2E_GPUS; i++)); do
    uuid=$(e2e_gpu_uuid "$i")
    expect "compute mode of $uuid" "$(awk -v u="$uuid" '$1 == u {print $2}' "$modes" 2>/dev/null)" EXCLUSIVE_PROCESS
  done
  share_pod mpsprobe 2 "${client_cmd[@]}"
  if wait_running mpsprobe 90; then
    uuid=$(kubectl -n "$NS" exec mpsprobe -- printenv NVIDIA_VISIBLE_DEVICES 2>&1)
    expect "CUDA_MPS_PIPE_DIRECTORY" "$(kubectl -n "$NS" exec mpsprobe -- printenv CUDA_MPS_PIPE_DIRECTORY 2>&1)" "/mps/$uuid/pipe"
    expect "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE (2 of 4)" \
      "$(kubectl -n "$NS" exec mpsprobe -- printenv CUDA_MPS_ACTIVE_THREAD_PERCENTAGE 2>&1)" 50
    out=$(kubectl -n "$NS" exec mpsprobe -- sh -c 'test -S "$CUDA_MPS_PIPE_DIRECTORY/control" && echo socket' 2>&1)
    expect "the GPU's live control socket inside the pod" "$out" socket
    out=$(kubectl -n "$NS" exec mpsprobe -- sh -c 'touch /dev/shm/e2e-mps && echo ok' 2>&1)
    if [[ $out == ok && -e $root/shm/e2e-mps ]]; then pass "the pod's /dev/shm is the daemons' $root/shm"
    else fail "/dev/shm of the pod is not $root/shm: $out"; fi
    rm -f "$root/shm/e2e-mps"
    # The arbiter counts the MPS pod observe-only: named by the kubelet's PodResources, its
    # memory reported, never leased.
    expect "SLICER_ARBITER_OBSERVE" "$(kubectl -n "$NS" exec mpsprobe -- printenv SLICER_ARBITER_OBSERVE 2>&1)" 1
    local ip metrics obs mem
    ip=$(kubectl -n gpu-slicer get pod "$(plugin_pod)" -o jsonpath='{.status.podIP}')
    for ((i = 0; i < 30; i++)); do
      metrics=$(curl -sf "http://$ip:9400/metrics")
      obs=$(grep '^slicer_arbiter_observed_clients{' <<<"$metrics" | grep 'pod="mpsprobe"' | grep "namespace=\"$NS\"" | head -1)
      mem=$(grep '^slicer_arbiter_memory_used_bytes{' <<<"$metrics" | grep 'pod="mpsprobe"' | head -1)
      [[ $obs == *" 1" && $mem == *" 268435456" ]] && break
      sleep 1
    done
    if [[ $obs == *" 1" ]]; then pass "the arbiter observes the MPS pod: $obs"
    else fail "no slicer_arbiter_observed_clients for pod mpsprobe: '$obs' ($(grep '^slicer_arbiter_clients{' <<<"$metrics" | head -3))"; fi
    if [[ $mem == *" 268435456" ]]; then pass "memory the MPS pod holds: $mem"
    else fail "slicer_arbiter_memory_used_bytes for mpsprobe: '$mem' (want 268435456)"; fi
  else
    fail "pod mpsprobe did not run: $(kubectl -n "$NS" describe pod mpsprobe | tail -5)"
  fi
  delete_pods mpsprobe
  # GPU 0's control daemon dies (its pid is the MPS pod's): its shares go Unhealthy until the
  # restarted daemon answers.
  uuid=$(e2e_gpu_uuid 0)
  pod=$(mps_pod)
  before=$(mps_events "$uuid" gpu_unhealthy)
  local healthy_before
  healthy_before=$(mps_events "$uuid" gpu_healthy)
  kubectl -n gpu-slicer exec "$pod" -- sh -c "kill -9 \$(cat $root/$uuid/pipe/nvidia-cuda-mps-control.pid)" >/dev/null 2>&1
  for ((i = 0; i < 30; i++)); do
    (($(mps_events "$uuid" gpu_unhealthy) > before)) && break
    sleep 1
  done
  if (($(mps_events "$uuid" gpu_unhealthy) > before)); then pass "$uuid's shares Unhealthy while its daemon is down"
  else fail "the plugin never marked $uuid Unhealthy after its daemon was killed"; fi
  if wait_mps_ready "$uuid" "$healthy_before" && [[ $(sed -n 's/.* restarts=\([0-9]*\) .*/\1/p' "$root/$uuid/state") == 1 ]]; then
    pass "restarted (restarts=1) and its shares healthy again"
  else fail "not back after the kill: $(cat "$root/$uuid/state" 2>&1)"; fi
  gets_a_share after-mps-restart
  kubectl label node "$E2E_NODE" nvidia.com/device-plugin.config- >/dev/null
  got=$(wait_allocatable "$CAP" 60)
  for ((i = 0; i < 30; i++)); do
    [[ ! -e $root/$uuid/state ]] && ! grep -q EXCLUSIVE_PROCESS "$modes" 2>/dev/null && break
    sleep 1
  done
  if ! grep -q EXCLUSIVE_PROCESS "$modes" 2>/dev/null && [[ ! -e $root/$uuid/state ]]; then
    pass "back on ts-4: the daemons stopped, compute modes restored ($(tr '\n' ' ' <"$modes"))"
  else
    fail "after leaving MPS: modes '$(tr '\n' ' ' <"$modes" 2>/dev/null)', state $(ls "$root/$uuid" 2>&1)"
    kubectl -n gpu-slicer logs "$pod" 2>&1 | tail -20 | sed 's/^/    /'
  fi
}

all=(capacity scheduling container attribution relabel restart xid mps)
(($# > 0)) && all=("$@")
kubectl create namespace "$NS" >/dev/null 2>&1 || true
start=$(date +%s)
for s in "${all[@]}"; do
  current=$s
  t=$(date +%s)
  echo "=== $s"
  "$s"
  echo "=== $s: $(( $(date +%s) - t ))s"
done
delete_pods --all
echo "scenarios: ${#all[@]} run in $(( $(date +%s) - start ))s, ${#failures[@]} failed check(s)"
for f in "${failures[@]}"; do echo "  FAIL: $f"; done
((${#failures[@]} == 0))
