# Shared settings of the single-node end-to-end cluster (sourced by scripts/e2e.sh and the
# scripts in tests/e2e). Everything the cluster writes lives under $E2E_STATE, except the host
# paths a GPU node really has (the kubelet's /var/lib/kubelet, the chart's host directories), which
# `down` removes again.
e2e_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_REPO=$(cd "$e2e_here/../.." && pwd)
E2E_CACHE=${SLICER_CACHE_DIR:-$HOME/.cache/gpu-slicer}/e2e
E2E_STATE=${SLICER_E2E_STATE:-/var/lib/gpu-slicer-e2e}
E2E_BUILD=${SLICER_BUILD_DIR:-$E2E_REPO/build}
E2E_NODE=${SLICER_E2E_NODE:-e2e-gpu-node}
# Ports and ranges picked away from the defaults, so that this cluster does not meet another
# etcd or API server on the machine.
E2E_ETCD_PORT=23791
E2E_ETCD_PEER_PORT=23792
E2E_APISERVER_PORT=16443
E2E_POD_CIDR=10.215.0.0/24
E2E_SERVICE_CIDR=10.216.0.0/24
E2E_SERVICE_IP=10.216.0.1
E2E_BRIDGE=sl15cni0
# The fake driver: where the NVIDIA GPU operator puts a containerized driver, and what the chart's
# nvidiaDriverRoot value then says.
E2E_DRIVER_ROOT=/run/nvidia/driver
E2E_KUBELET_ROOT=/var/lib/kubelet
E2E_IMAGE=localhost/gpu-slicer:e2e
E2E_PAUSE_IMAGE=localhost/gpu-slicer-e2e/pause:1
E2E_GPUS=${SLICER_E2E_GPUS:-2}
E2E_REPLICAS=${SLICER_E2E_REPLICAS:-4}

export KUBECONFIG=$E2E_STATE/pki/admin.kubeconfig
export CONTAINERD_ADDRESS=$E2E_STATE/run/containerd.sock CONTAINERD_NAMESPACE=k8s.io
export PATH="$E2E_STATE/bin:/usr/local/go/bin:$PATH"

e2e_log() { echo "e2e: $*" >&2; }
e2e_die() { echo "e2e: FAIL: $*" >&2; exit 1; }

# e2e_wait SECONDS WHAT CMD...: retries CMD (quietly) every second until it succeeds.
e2e_wait() {
  local t=$1 what=$2 i
  shift 2
  for ((i = 0; i < t; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  e2e_log "timed out after ${t}s waiting for $what"
  return 1
}

# e2e_start NAME CMD...: starts a daemon in its own session, output in $E2E_STATE/log/NAME.log,
# pid in $E2E_STATE/run/NAME.pid.
e2e_start() {
  local name=$1
  shift
  mkdir -p "$E2E_STATE/log" "$E2E_STATE/run"
  setsid "$@" >>"$E2E_STATE/log/$name.log" 2>&1 </dev/null &
  echo $! >"$E2E_STATE/run/$name.pid"
}

# e2e_stop NAME: SIGTERM to the daemon's process group, SIGKILL after 10 s.
e2e_stop() {
  local f="$E2E_STATE/run/$1.pid" pid i
  [[ -f $f ]] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

e2e_running() { local f="$E2E_STATE/run/$1.pid"; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

# The UUID of fake GPU N (the machine file scripts/e2e.sh writes): hex, as cuDeviceGetUuid's
# bytes print.
e2e_gpu_uuid() { printf 'GPU-e2e00000-0000-0000-0000-%012d' "$1"; }
