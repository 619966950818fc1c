#!/usr/bin/env bash
# Builds the image's file system without a Docker engine, with Debian's own tools: a minimal
# Debian 12 root (mmdebstrap, from this machine's apt sources) with the runtime libraries the
# binaries need, plus /usr/bin/slicer and /usr/lib/gpu-slicer/libslicer.so, then checks that
# `slicer --help` runs inside it (chroot). Output: a rootfs tarball an OCI tool can wrap
# (e.g. `docker import --change 'ENTRYPOINT ["/usr/bin/slicer"]' out/gpu-slicer-rootfs.tar`).
#
#   deploy/image/build-rootfs.sh [OUT_DIR]    (default out/image; needs root for chroot)
#
# BUILD_DIR (default build) holds slicer and libslicer.so from the CMake build. Takes a few
# minutes on a cold apt cache, so it is not part of tests/deploy/run.sh.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$repo/build}
out=${1:-$repo/out/image}
suite=bookworm

if [[ ! -x $build/slicer || ! -f $build/libslicer.so ]]; then
  echo "SKIP: $build/slicer or $build/libslicer.so is not built yet; build first:"
  echo "  scripts/setup.sh && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build"
  exit 0
fi
[[ $(id -u) == 0 ]] || { echo "FAIL: run as root (mmdebstrap --mode=root and chroot need it)"; exit 1; }
command -v mmdebstrap >/dev/null || {
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
}

packages=$("$repo/deploy/image/runtime-packages.sh" "$build/slicer" "$build/libslicer.so" | paste -sd, -)
echo "build-rootfs: runtime packages: $packages"
rootfs="$out/rootfs"
rm -rf "$rootfs" && mkdir -p "$out"
# No mirror argument: mmdebstrap then uses this machine's apt sources, the same Debian archive
# the build's own packages came from.
mmdebstrap --mode=root --variant=minbase --include="ca-certificates,$packages" \
  --dpkgopt='path-exclude=/usr/share/{doc,man,locale}/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
  "$suite" "$rootfs"

install -D -m 0755 "$build/slicer" "$rootfs/usr/bin/slicer"
install -D -m 0644 "$build/libslicer.so" "$rootfs/usr/lib/gpu-slicer/libslicer.so"

# The check the Dockerfile makes: the binary finds every library it needs in this file system.
if chroot "$rootfs" /usr/bin/slicer --help >"$out/help.txt" 2>&1; then
  echo "PASS: slicer --help runs inside the rootfs ($(wc -l <"$out/help.txt") lines of help)"
else
  echo "FAIL: slicer --help inside the rootfs:"; cat "$out/help.txt"; exit 1
fi
chroot "$rootfs" /bin/sh -c 'test -f /usr/lib/gpu-slicer/libslicer.so && cp /usr/lib/gpu-slicer/libslicer.so /tmp/x && mv /tmp/x /tmp/y' ||
  { echo "FAIL: the init container's copy command does not work in the rootfs"; exit 1; }
echo "PASS: the chart's install-shim command works in the rootfs"

tar -C "$rootfs" --numeric-owner -cf "$out/gpu-slicer-rootfs.tar" .
echo "build-rootfs: wrote $out/gpu-slicer-rootfs.tar ($(du -h "$out/gpu-slicer-rootfs.tar" | cut -f1))"
