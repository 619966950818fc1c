#!/usr/bin/env bash
# Images of the end-to-end cluster, imported into its containerd (namespace k8s.io, where the
# kubelet's images live) from docker-archive tars assembled here with tar, sha256sum and a
# hand-written manifest:
#   tests/e2e/images.sh pause     the pod sandbox image: a static pause binary (pause.c)
#   tests/e2e/images.sh slicer    the gpu-slicer image: deploy/image/build-rootfs.sh's rootfs
# Both tars are cached under $SLICER_CACHE_DIR/e2e/images and rebuilt when their input changes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
images=$E2E_CACHE/images
mkdir -p "$images"

# archive TAR IMAGE LAYER_TAR ENTRYPOINT_JSON CMD_JSON: one-layer docker-archive.
archive() {
  local out=$1 ref=$2 layer=$3 entry=$4 cmd=$5 d diff cfg cfgsum
  d=$(mktemp -d)
  diff=$(sha256sum "$layer" | cut -d' ' -f1)
  mkdir -p "$d/$diff"
  ln "$layer" "$d/$diff/layer.tar" 2>/dev/null || cp "$layer" "$d/$diff/layer.tar"
  cfg=$(printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":%s,"Cmd":%s,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created_by":"tests/e2e/images.sh"}]}' "$entry" "$cmd" "$diff")
  cfgsum=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
  printf '%s' "$cfg" >"$d/$cfgsum.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$cfgsum" "$ref" "$diff" >"$d/manifest.json"
  tar -C "$d" -cf "$out.tmp" manifest.json "$cfgsum.json" "$diff/layer.tar"
  mv -f "$out.tmp" "$out"
  rm -rf "$d"
}

import() { # TAR IMAGE
  ctr -n k8s.io images import "$1" >/dev/null
  ctr -n k8s.io images ls -q | grep -qxF "$2" || e2e_die "image $2 not in containerd after import of $1"
  # Keep it from the kubelet's image garbage collection.
  ctr -n k8s.io images label "$2" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
}

pause_image() {
  local tar=$images/pause.tar src=$e2e_here/pause.c stamp
  stamp=$(sha256sum "$src" | cut -c1-16)
  if [[ ! -f $tar || $(cat "$tar.stamp" 2>/dev/null) != "$stamp" ]]; then
    local d
    d=$(mktemp -d)
    mkdir -p "$d/root"
    gcc -static -O2 -s -o "$d/root/pause" "$src"
    tar -C "$d/root" --numeric-owner --owner=0 --group=0 -cf "$d/layer.tar" pause
    archive "$tar" "$E2E_PAUSE_IMAGE" "$d/layer.tar" '["/pause"]' 'null'
    echo "$stamp" >"$tar.stamp"
    rm -rf "$d"
  fi
  import "$tar" "$E2E_PAUSE_IMAGE"
}

slicer_image() {
  local tar=$images/gpu-slicer.tar stamp out=$images/rootfs
  [[ -x $E2E_BUILD/slicer && -f $E2E_BUILD/libslicer.so ]] || e2e_die "build first: $E2E_BUILD/slicer, libslicer.so"
  stamp=$(cat "$E2E_BUILD/slicer" "$E2E_BUILD/libslicer.so" "$E2E_REPO/deploy/image/build-rootfs.sh" | sha256sum | cut -c1-16)
  if [[ ! -f $tar || $(cat "$tar.stamp" 2>/dev/null) != "$stamp" ]]; then
    e2e_log "building the gpu-slicer rootfs (deploy/image/build-rootfs.sh)"
    BUILD_DIR=$E2E_BUILD "$E2E_REPO/deploy/image/build-rootfs.sh" "$out" >"$images/build-rootfs.log" 2>&1 ||
      { tail -20 "$images/build-rootfs.log"; e2e_die "deploy/image/build-rootfs.sh failed"; }
    grep -q '^PASS: slicer --help' "$images/build-rootfs.log" || { cat "$images/build-rootfs.log"; e2e_die "build-rootfs.sh did not build"; }
    # The Dockerfile's ENTRYPOINT and CMD.
    archive "$tar" "$E2E_IMAGE" "$out/gpu-slicer-rootfs.tar" '["/usr/bin/slicer"]' '["device-plugin"]'
    rm -rf "$out/rootfs" "$out/gpu-slicer-rootfs.tar"
    echo "$stamp" >"$tar.stamp"
  fi
  import "$tar" "$E2E_IMAGE"
}

case ${1:-} in
  pause) pause_image ;;
  slicer) slicer_image ;;
  *) echo "usage: $0 pause|slicer" >&2; exit 2 ;;
esac
