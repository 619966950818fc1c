# Sourced by every script that runs Go (tests/conformance/run.sh, tests/deploy/run.sh,
# scripts/test.sh): picks the Go toolchain the same way everywhere.
#
#   source scripts/go-toolchain.sh
#   slicer_go_setup GO_MOD_FILE || exit 1     # sets $go; exports GOTOOLCHAIN, GOFLAGS
#
# The go.mod's `go` line is the oldest toolchain that builds the module. The first of $GO (when
# set, only that), every `go` on PATH and /usr/local/go/bin/go that is at least that new runs it,
# with GOTOOLCHAIN=local (nothing is fetched). When none is but one of them is Go 1.21 or newer
# (which can switch toolchains), GOTOOLCHAIN=$SLICER_GO_TOOLCHAIN (default below) has it fetch
# that pinned release through the Go module proxy into its module cache, once. Older Go (Debian
# 12's 1.19) cannot: the message says what to install. GOFLAGS=-mod=readonly: a test never rewrites
# go.mod or go.sum; a missing go.sum line is an error to fix in the tree.
# Where Go's caches live is each caller's choice (set GOMODCACHE/GOCACHE before calling: a
# switched toolchain is kept in the module cache).

slicer_go_pinned=${SLICER_GO_TOOLCHAIN:-go1.26.8}

# slicer_go_version GO: prints "1.26.8" for a toolchain (its own version, not one it would fetch).
slicer_go_version() {
  local v
  v=$(GOTOOLCHAIN=local GOFLAGS= "$1" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}
  echo "${v%%[!0-9.]*}"
}
# slicer_go_at_least HAVE WANT: whether version HAVE >= WANT.
slicer_go_at_least() {
  [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]
}

slicer_go_setup() {
  local mod=$1 want c v cands=() seen=() switchable=
  want=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$mod")
  [[ -n $want ]] || { echo "go: no 'go' line in $mod" >&2; return 1; }
  if [[ -n ${GO:-} ]]; then
    cands=("$GO")
  else
    mapfile -t cands < <(type -P -a go 2>/dev/null)
    cands+=(/usr/local/go/bin/go)
  fi
  for c in "${cands[@]}"; do
    [[ -x $(type -P "$c" 2>/dev/null) ]] || continue
    v=$(slicer_go_version "$c") || continue
    seen+=("$c (go$v)")
    if slicer_go_at_least "$v" "$want"; then
      go=$c
      export GOTOOLCHAIN=local
      break
    fi
    [[ -z $switchable ]] && slicer_go_at_least "$v" 1.21 && switchable=$c
  done
  if [[ -z ${go:-} || ${GOTOOLCHAIN:-} != local ]]; then
    if [[ -z $switchable ]]; then
      echo "go: $mod needs Go >= $want; found: ${seen[*]:-none}." >&2
      echo "go: install Go >= $want (or any Go >= 1.21, which fetches $slicer_go_pinned itself)" \
        "under /usr/local/go or on PATH, or set GO=/path/to/go" >&2
      return 1
    fi
    slicer_go_at_least "${slicer_go_pinned#go}" "$want" ||
      { echo "go: SLICER_GO_TOOLCHAIN=$slicer_go_pinned is older than $want ($mod)" >&2; return 1; }
    go=$switchable
    export GOTOOLCHAIN=$slicer_go_pinned
    echo "go: $switchable is older than $want: using $slicer_go_pinned (GOTOOLCHAIN)" >&2
  fi
  export GOFLAGS=-mod=readonly
  # The toolchain actually run (a switched one reports the pinned version).
  v=$(cd "$(dirname "$mod")" && "$go" env GOVERSION 2>/dev/null) ||
    { echo "go: $go could not start ($GOTOOLCHAIN)" >&2; return 1; }
  slicer_go_at_least "${v#go}" "$want" ||
    { echo "go: $go runs $v, older than $want ($mod)" >&2; return 1; }
}
