#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy and kubectl
# from k8s.io/kubernetes at the release tests/conformance pins (its go.mod: the require of
# k8s.io/kubernetes plus a replace for every staging module), in a wrapper module of the same
# shape, with `go build` of the cmd/ packages. The binaries are cached under
# $SLICER_CACHE_DIR/e2e/kubernetes-<version>/; a warm run only checks that they are there.
#   tests/e2e/build-kube.sh            prints the binary folder on its last line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SLICER_CACHE_DIR:-$HOME/.cache/gpu-slicer}
pin="$repo/tests/conformance/go.mod"
version=$(sed -n 's/^[[:space:]]*k8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$pin" | head -1)
[[ -n $version ]] || { echo "build-kube: no k8s.io/kubernetes require in $pin" >&2; exit 1; }
bin="$cache/e2e/kubernetes-$version"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
missing=()
for c in "${cmds[@]}"; do [[ -x $bin/$c ]] || missing+=("$c"); done
if (( ${#missing[@]} == 0 )); then echo "$bin"; exit 0; fi

go=${GO:-}
[[ -n $go ]] || { command -v go >/dev/null && go=go || go=/usr/local/go/bin/go; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
# The same Go caches as tests/conformance/run.sh when SLICER_CACHE_DIR is set (CI keeps it).
export GOMODCACHE=${GOMODCACHE:-$cache/go/mod} GOCACHE=${GOCACHE:-$cache/go/build}
mod="$cache/e2e/wrapper-$version"
mkdir -p "$mod" "$bin"
cd "$mod"
if [[ ! -f go.mod ]] || ! cmp -s "$pin" .pin; then
  rm -f go.mod go.sum
  "$go" mod init gpu-slicer/tests/e2e/kube >/dev/null 2>&1
  # Every replace of the pinned module (the staging modules at v0.Y.Z), nothing else.
  args=()
  while read -r m v; do args+=(-replace="$m=$m@$v"); done < <(
    sed -n 's/^replace \(k8s.io\/[^ ]*\) => k8s.io\/[^ ]* \(v[^ ]*\)$/\1 \2/p' "$pin")
  (( ${#args[@]} > 0 )) || { echo "build-kube: no staging replaces in $pin" >&2; exit 1; }
  "$go" mod edit "${args[@]}"
  printf 'package kube\n\nimport _ "k8s.io/kubernetes/cmd/kubelet/app"\n' >kube.go
  "$go" get "k8s.io/kubernetes@$version"
  cp "$pin" .pin
fi
echo "build-kube: building ${missing[*]} at k8s.io/kubernetes $version (a cold build takes long)" >&2
start=$(date +%s)
# What `--version` and the Node's kubeletVersion say (the upstream build stamps the same).
ldver=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldver+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$(cut -d. -f2 <<<"$version")"
  ldver+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
for c in "${missing[@]}"; do
  pkg=k8s.io/kubernetes/cmd/$c
  [[ $c == kubectl ]] && pkg=k8s.io/kubernetes/cmd/kubectl
  # The upstream release flags: no cgo for the control plane, static binaries.
  CGO_ENABLED=0 nice -n 10 "$go" build -trimpath -ldflags="-s -w $ldver" -o "$bin/.$c.new" "$pkg"
  mv -f "$bin/.$c.new" "$bin/$c"
done
echo "build-kube: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
