#!/usr/bin/env bash
# Validates everything under deploy/: the Helm chart (lint, render for several values sets, bad
# values rejected with their message), every rendered object and every manifest against the
# Kubernetes and Karpenter schemas, and Karpenter's own scheduler packing pods onto nodes with
# our NodeOverlays (tests/deploy/karpenter).
#
# Also checks the chart against the binary it deploys (tests/deploy/chartwiring): every flag and
# environment variable the rendered containers get is one `slicer` knows, and the paths they name
# are wired to the right volumes. That needs the built binary: $SLICER_BIN, else build/slicer.
#
# Needs Go (and network access to the Go module proxy on a cold cache). Tools and schemas
# are cached under $SLICER_CACHE_DIR (default ~/.cache/gpu-slicer).
#   tests/deploy/run.sh            everything
#   PACKING_RESULTS_CSV=f.csv ...  also keep the Karpenter plans for N = 1..32
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SLICER_CACHE_DIR:-$HOME/.cache/gpu-slicer}
chart="$repo/deploy/helm/gpu-slicer"

# Pinned versions. Karpenter 1.14.1 is the newest whose module builds with Go 1.26.6+ and
# has NodeOverlay (karpenter.sh/v1alpha1); the AWS provider of the same release ships the CRDs
# (NodePool, NodeOverlay, EC2NodeClass) installed on EKS.
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
KUBERNETES_MODULE=k8s.io/kubernetes@v1.37.2
KARPENTER_AWS_MODULE=github.com/aws/karpenter-provider-aws@v1.14.1
PROMETHEUS_OPERATOR_MODULE=github.com/prometheus-operator/prometheus-operator@v0.85.0
KUBE_VERSION=1.33.0 # the Kubernetes version charts are rendered for (EKS standard support)

# Where CI caches only $SLICER_CACHE_DIR, keep Go's caches there too: compiling Karpenter's
# dependencies is most of a cold run (about 7 CPU-minutes), a warm run takes seconds.
if [[ -n ${SLICER_CACHE_DIR:-} ]]; then
  export GOCACHE=${GOCACHE:-$cache/go-build} GOMODCACHE=${GOMODCACHE:-$cache/go-mod}
fi
# The Go toolchain (scripts/go-toolchain.sh: go.mod's version or newer, -mod=readonly: the
# tests never rewrite go.mod/go.sum in the tree).
source "$repo/scripts/go-toolchain.sh"
slicer_go_setup "$here/go.mod" || { echo "FAIL: no usable Go toolchain"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=()
started=$(date +%s)

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; failures+=("$*"); }
# step NAME CMD...: runs CMD with its output in a log, printed only when it fails.
step() {
  local name=$1 log="$work/log.$RANDOM"
  shift
  if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name"; sed 's/^/    /' "$log"; fi
}

# --- tools -----------------------------------------------------------------------------------
mkdir -p "$cache/bin"
install_tool() { # NAME MODULE_PATH VERSION
  local stamp="$cache/bin/.$1-$3"
  [[ -x "$cache/bin/$1" && -e "$stamp" ]] && return 0
  (cd "$work" && GOBIN="$cache/bin" "$go" install "$2@$3") && touch "$stamp"
}
module_dir() { # MODULE@VERSION -> its directory in the module cache (downloaded if needed)
  (cd "$work" && "$go" mod download -json "$1") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}
step "install helm $HELM_VERSION" install_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
step "install kubeconform $KUBECONFORM_VERSION" install_tool kubeconform \
  github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
helm="$cache/bin/helm"
kubeconform="$cache/bin/kubeconform"
[[ -x $helm && -x $kubeconform ]] || { echo "FAIL: tools missing; stopping"; exit 1; }

# --- schemas, generated offline from Go modules ----------------------------------------------
k8s_dir=$(module_dir "$KUBERNETES_MODULE")
aws_dir=$(module_dir "$KARPENTER_AWS_MODULE")
prom_dir=$(module_dir "$PROMETHEUS_OPERATOR_MODULE")
schemas="$cache/schemas/k8s-${KUBERNETES_MODULE##*@}_karpenter-${KARPENTER_AWS_MODULE##*@}_promop-${PROMETHEUS_OPERATOR_MODULE##*@}"
gen_schemas() {
  rm -rf "$schemas.tmp" && mkdir -p "$schemas.tmp" &&
    (cd "$here" && "$go" run ./schemagen -k8s "$k8s_dir/api/openapi-spec/v3" -out "$schemas.tmp" \
      "$aws_dir"/pkg/apis/crds/karpenter.sh_nodepools.yaml \
      "$aws_dir"/pkg/apis/crds/karpenter.sh_nodeclaims.yaml \
      "$aws_dir"/pkg/apis/crds/karpenter.sh_nodeoverlays.yaml \
      "$aws_dir"/pkg/apis/crds/karpenter.k8s.aws_ec2nodeclasses.yaml \
      "$prom_dir"/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml) &&
    rm -rf "$schemas" && mv "$schemas.tmp" "$schemas"
}
if [[ -n $k8s_dir && -n $aws_dir && -n $prom_dir ]]; then
  [[ -d $schemas ]] || step "generate JSON schemas (Kubernetes ${KUBERNETES_MODULE##*@}, Karpenter CRDs ${KARPENTER_AWS_MODULE##*@})" gen_schemas
else
  fail "download $KUBERNETES_MODULE / $KARPENTER_AWS_MODULE / $PROMETHEUS_OPERATOR_MODULE"
fi
# Strict: unknown fields are errors. No -ignore-missing-schemas: every kind must have a schema.
validate() { "$kubeconform" -strict -summary -output text \
  -schema-location "$schemas/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" "$@"; }

# --- chart: lint and render each values set, validate what it renders ------------------------
mkdir -p "$work/rendered"
values_sets=("defaults:" "karpenter:--set karpenter.enabled=true")
for f in "$chart"/ci/*.yaml; do values_sets+=("$(basename "$f" .yaml):-f $f"); done
for entry in "${values_sets[@]}"; do
  name=${entry%%:*}
  read -r -a args <<<"${entry#*:}"
  step "helm lint ($name)" "$helm" lint "$chart" --strict --namespace gpu-slicer \
    --kube-version "$KUBE_VERSION" "${args[@]}"
  out="$work/rendered/$name.yaml"
  if "$helm" template gpu-slicer "$chart" --namespace gpu-slicer --kube-version "$KUBE_VERSION" \
    "${args[@]}" >"$out" 2>"$out.err"; then
    pass "helm template ($name)"
    step "schemas: rendered objects ($name, $(grep -c '^kind:' "$out") objects)" validate "$out"
  else
    fail "helm template ($name)"
    sed 's/^/    /' "$out.err"
  fi
done

# The chart against the binary: flags and variables known, paths wired (see the test's comment).
# ctest passes SLICER_BIN (it registers this test only where the binary is built); without one
# this check fails: a validation that did not run is not a pass.
slicer_bin=${SLICER_BIN:-$repo/build/slicer}
[[ $slicer_bin == /* ]] || slicer_bin=$PWD/$slicer_bin
wiring() {
  cd "$here" && DEPLOY_RENDERED_DIR="$work/rendered" SLICER_BIN="$slicer_bin" \
    "$go" test ./chartwiring -count=1 -v
}
if [[ -x $slicer_bin ]]; then
  step "chart passes only flags and variables slicer knows, wired to its volumes (${#values_sets[@]} values sets, $slicer_bin)" wiring
else
  fail "chart flags against the binary: no executable $slicer_bin (build slicer, or set SLICER_BIN)"
fi

# rejected FILE CMD...: CMD (given FILE last) must fail, saying what FILE's first line names
# ('# expect: <message part>').
rejected() {
  local file=$1 want out
  shift
  want=$(sed -n '1s/^# expect: //p' "$file")
  [[ -n $want ]] || { echo "$file: first line must be '# expect: <message part>'"; return 1; }
  if out=$("$@" "$file" 2>&1); then
    echo "accepted; expected a rejection saying: $want"
    echo "$out"
    return 1
  fi
  grep -qF -- "$want" <<<"$out" || { echo "the rejection does not say '$want':"; echo "$out"; return 1; }
}
# A bad values file must fail `helm template` with the message its first line names.
for f in "$here"/bad-values/*.yaml; do
  step "bad values rejected ($(basename "$f"))" rejected "$f" "$helm" template x "$chart" \
    --namespace gpu-slicer --kube-version "$KUBE_VERSION" -f
done

# --- the validator itself: known-bad manifests must be rejected --------------------------------
# The schemas are generated here (schemagen), so a generator that emitted empty or permissive
# schemas would let everything pass: each file in bad-manifests/ breaks one rule and must fail
# validation with the message its first line names.
for f in "$here"/bad-manifests/*.yaml; do
  step "schemas reject a known-bad manifest ($(basename "$f"))" rejected "$f" validate
done

# --- every manifest in deploy/ ---------------------------------------------------------------
# Helm sources and values files are not Kubernetes objects; everything else must validate.
mapfile -t manifests < <(find "$repo/deploy" -name '*.yaml' -not -path '*/helm/*' \
  -not -name '*values*.yaml' | sort)
step "schemas: deploy/ manifests (${#manifests[@]} files)" validate "${manifests[@]}"

# deploy/karpenter is rendered from the chart; a hand edit or a chart change without a
# re-render would make the two disagree.
fresh() {
  HELM="$helm" "$repo/deploy/karpenter/render.sh" "$work/karpenter" &&
    diff -ru -x '*.sh' -x '*values*' "$repo/deploy/karpenter" "$work/karpenter" ||
    { echo "deploy/karpenter is stale: run HELM=$helm deploy/karpenter/render.sh"; return 1; }
}
step "deploy/karpenter matches the chart (deploy/karpenter/render.sh)" fresh

# The feature-gate snippet must switch NodeOverlay on in Karpenter's own chart.
gate() {
  "$helm" template karpenter "$aws_dir/charts/karpenter" --namespace kube-system \
    --kube-version "$KUBE_VERSION" -f "$repo/deploy/karpenter/karpenter-values.yaml" \
    --set settings.clusterName=x --show-only templates/deployment.yaml | grep -q 'NodeOverlay=true'
}
step "karpenter-values.yaml turns NodeOverlay on in Karpenter's chart ${KARPENTER_AWS_MODULE##*@}" gate

# --- Karpenter's scheduler on our manifests --------------------------------------------------
"$helm" template gpu-slicer "$chart" --namespace gpu-slicer --kube-version "$KUBE_VERSION" \
  >"$work/chart-defaults.yaml" 2>/dev/null
HELM="$helm" "$repo/deploy/karpenter/render.sh" "$work/karpenter-wide" \
  --set 'karpenter.nodePool.gpuCounts={1,4,8}' >/dev/null 2>&1
karpenter_test() {
  cd "$here" && DEPLOY_KARPENTER_DIR="$repo/deploy/karpenter" \
    DEPLOY_RENDERED_CHART="$work/chart-defaults.yaml" \
    DEPLOY_KARPENTER_WIDE_DIR="$work/karpenter-wide" \
    PACKING_RESULTS_CSV="${PACKING_RESULTS_CSV:-}" \
    "$go" test ./karpenter -count=1 -v
}
step "Karpenter packs shares: N pods -> N nodes without overlays, ceil(N/4) g4dn.xlarge with (N=1..32)" karpenter_test

elapsed=$(($(date +%s) - started))
if ((${#failures[@]})); then
  echo "deploy validation: ${#failures[@]} FAILED (${elapsed}s):"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
echo "deploy validation: all PASSED (${elapsed}s)"
