#!/usr/bin/env bash
# A real single-node Kubernetes with gpu-slicer on a fake GPU driver (docs/e2e.md):
#   scripts/e2e.sh up      start the cluster (etcd, kube-apiserver, kube-controller-manager,
#                          kube-scheduler, kube-proxy, containerd, kubelet), install the fake
#                          driver, import the images and `helm install` the chart; leaves it up
#   scripts/e2e.sh test    up, then the scenarios (tests/e2e/scenarios.sh [NAME...]), then down
#                          (SLICER_E2E_KEEP=1: leave it up)
#   scripts/e2e.sh down    stop everything and remove its state
#   scripts/e2e.sh env     print the exports that point kubectl/ctr at the cluster
# Needs root and a build (scripts/setup.sh && cmake -S . -B build -G Ninja && cmake --build build).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/tests/e2e/lib.sh"

helm_bin() {
  local ver cache
  cache=${SLICER_CACHE_DIR:-$HOME/.cache/gpu-slicer}
  # The helm that tests/deploy uses (same version, same place).
  ver=$(sed -n 's/^HELM_VERSION=\(v[0-9.]*\).*/\1/p' "$repo/tests/deploy/run.sh")
  if [[ ! -x $cache/bin/helm || ! -e $cache/bin/.helm-$ver ]]; then
    e2e_log "installing helm $ver"
    # Go's caches where tests/deploy/run.sh keeps them.
    (cd /tmp && if [[ -n ${SLICER_CACHE_DIR:-} ]]; then
        export GOCACHE=${GOCACHE:-$cache/go-build} GOMODCACHE=${GOMODCACHE:-$cache/go-mod}
      fi
      GOTOOLCHAIN=local GOFLAGS=-mod=mod GOBIN=$cache/bin go install "helm.sh/helm/v3/cmd/helm@$ver") >&2 &&
      touch "$cache/bin/.helm-$ver"
  fi
  echo "$cache/bin/helm"
}

# The node's driver: the fake libnvidia-ml and libcuda where the chart's nvidiaDriverRoot says,
# with the fake machine they present (E2E_GPUS Tesla T4s) and their XID events file.
install_driver() {
  local lib=$E2E_DRIVER_ROOT/usr/lib/x86_64-linux-gnu etc=$E2E_DRIVER_ROOT/etc/fake-gpus i
  [[ -f $E2E_BUILD/fakes/libnvidia-ml.so.1 && -f $E2E_BUILD/fakes/libcuda.so.1 ]] ||
    e2e_die "no fakes in $E2E_BUILD/fakes (build first)"
  mkdir -p "$lib" "$etc"
  install -m 0755 "$E2E_BUILD/fakes/libnvidia-ml.so.1" "$E2E_BUILD/fakes/libcuda.so.1" "$lib/"
  # The driver's MPS control tool, where the chart's MPS DaemonSet looks under the driver root.
  [[ -x $E2E_BUILD/fakes/bin/nvidia-cuda-mps-control ]] || e2e_die "no fake nvidia-cuda-mps-control"
  mkdir -p "$E2E_DRIVER_ROOT/usr/bin"
  install -m 0755 "$E2E_BUILD/fakes/bin/nvidia-cuda-mps-control" "$E2E_DRIVER_ROOT/usr/bin/"
  {
    echo 'driverVersion: "580.159.04"'
    echo 'devices:'
    for ((i = 0; i < E2E_GPUS; i++)); do
      printf '  - {uuid: %s, name: Tesla T4, memoryMiB: 15360, numaNode: 0}\n' "$(e2e_gpu_uuid "$i")"
    done
  } >"$etc/machine.yaml"
  [[ -f $etc/events ]] || : >"$etc/events"
  # The test program the workload pods run (tests/shim/cuda_client.cc), on the fake libcuda.
  mkdir -p "$E2E_STATE/assets"
  install -m 0755 "$E2E_BUILD/shim_cuda_client" "$E2E_STATE/assets/cuda_client"
}

up() {
  "$repo/tests/e2e/cluster.sh" up
  install_driver
  "$repo/tests/e2e/images.sh" slicer
  local helm
  helm=$(helm_bin)
  # What a user does to a GPU node without NFD or Karpenter (values.yaml: the DaemonSet's affinity).
  kubectl label node "$E2E_NODE" nvidia.com/gpu.present=true --overwrite >/dev/null
  "$helm" upgrade --install gpu-slicer "$repo/deploy/helm/gpu-slicer" -n gpu-slicer --create-namespace \
    -f "$repo/tests/e2e/values.yaml" --set image.repository="${E2E_IMAGE%:*}" --set image.tag="${E2E_IMAGE##*:}" \
    --wait --timeout 180s || {
      kubectl -n gpu-slicer get pods -o wide >&2 || true
      kubectl -n gpu-slicer describe pods >&2 || true
      e2e_die "helm install did not come up"
    }
  e2e_log "gpu-slicer installed; try: source <(scripts/e2e.sh env); kubectl get node $E2E_NODE -o yaml"
}

case ${1:-} in
  up) up ;;
  down) "$repo/tests/e2e/cluster.sh" down ;;
  test)
    shift
    start=$(date +%s)
    status=0
    up || status=$?
    if (( status == 0 )); then
      e2e_log "up in $(( $(date +%s) - start ))s"
      "$repo/tests/e2e/scenarios.sh" "$@" || status=$?
    fi
    if [[ ${SLICER_E2E_KEEP:-} != 1 ]]; then "$repo/tests/e2e/cluster.sh" down || true; fi
    e2e_log "test finished in $(( $(date +%s) - start ))s (status $status)"
    exit $status
    ;;
  env) echo "export KUBECONFIG=$KUBECONFIG CONTAINERD_ADDRESS=$CONTAINERD_ADDRESS CONTAINERD_NAMESPACE=k8s.io PATH=$E2E_STATE/bin:\$PATH" ;;
  *) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
