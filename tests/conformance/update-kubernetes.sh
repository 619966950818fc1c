#!/usr/bin/env bash
# Pins this module to one Kubernetes release: k8s.io/kubernetes vX.Y.Z plus a `replace` for every
# k8s.io/* staging module that release's go.mod maps to ./staging (k8s.io/kubernetes requires them
# as v0.0.0, which only resolves inside its own tree), each pinned to the matching v0.Y.Z.
# Usage: tests/conformance/update-kubernetes.sh v1.37.2   (then commit go.mod and go.sum)
set -euo pipefail
cd "$(dirname "$0")"
version=${1:?usage: $0 v1.Y.Z}
staging_version="v0.${version#v1.}"
go=${GO:-go}
gomod=$("$go" mod download -json "k8s.io/kubernetes@${version}" | sed -n 's/^\t"GoMod": "\(.*\)",$/\1/p')
[[ -n "$gomod" ]] || { echo "update-kubernetes: cannot download k8s.io/kubernetes@${version}" >&2; exit 1; }
mapfile -t staging < <(sed -n 's#^\t\(k8s.io/[^ ]*\) => ./staging/src/.*#\1#p' "$gomod")
(( ${#staging[@]} > 0 )) || { echo "update-kubernetes: no staging replaces in $gomod" >&2; exit 1; }
args=()
for m in "${staging[@]}"; do
  "$go" mod edit -dropreplace="$m" 2>/dev/null || true
  args+=(-replace="${m}=${m}@${staging_version}")
done
"$go" mod edit "${args[@]}"
"$go" get "k8s.io/kubernetes@${version}"
"$go" mod tidy
echo "update-kubernetes: k8s.io/kubernetes ${version}, ${#staging[@]} staging modules at ${staging_version}"
