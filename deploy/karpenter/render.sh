#!/usr/bin/env bash
# Renders the Karpenter objects in this directory from the gpu-slicer chart, so that the shares
# per GPU the NodeOverlays advertise come from the same values as the plugin's config.
#   deploy/karpenter/render.sh [OUT_DIR] [helm args...]   (OUT_DIR defaults to this directory)
# Example for your cluster: deploy/karpenter/render.sh /tmp/k --set karpenter.clusterName=prod
# HELM names the helm binary (default: helm on PATH).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
chart="$here/../helm/gpu-slicer"
out=${1:-$here}
shift || true
helm=${HELM:-helm}
mkdir -p "$out"

render() { # TEMPLATE OUT_FILE [helm args...]
  local template=$1 file=$2
  shift 2
  {
    echo "# Rendered by deploy/karpenter/render.sh from deploy/helm/gpu-slicer ($template)."
    echo "# Edit the chart's values, not this file; tests/deploy/run.sh checks they agree."
    "$helm" template gpu-slicer "$chart" --namespace gpu-slicer --kube-version 1.33.0 \
      --set karpenter.enabled=true "$@" --show-only "templates/karpenter/$template" |
      # Plain manifests for kubectl apply: drop what says Helm manages them.
      grep -v -e '^# Source:' -e 'helm.sh/chart:' -e 'app.kubernetes.io/managed-by:' \
        -e 'app.kubernetes.io/instance:'
  } > "$file"
}
render nodepool.yaml "$out/nodepool.yaml" "$@"
render nodeoverlay.yaml "$out/nodeoverlays.yaml" "$@"
render ec2nodeclass.yaml "$out/ec2nodeclasses.yaml" "$@"
