#!/usr/bin/env bash
# Prints the Debian packages that provide the shared libraries the given binaries load, so the
# runtime image carries exactly those (gRPC, protobuf, abseil, yaml-cpp, ...) and no -dev.
# NVIDIA's libraries are left out: the NVIDIA container runtime mounts them from the host.
# Usage: runtime-packages.sh BINARY...   (on the Debian 12 build machine, after the build)
set -euo pipefail
for bin in "$@"; do
  ldd "$bin" | awk '/=> \// { print $3 }'
done | sort -u | while read -r lib; do
  real=$(readlink -f "$lib")
  # dpkg knows a library by the path it installed, which may be the symlink or the target.
  dpkg -S "$lib" 2>/dev/null || dpkg -S "$real" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null ||
    echo "runtime-packages: no Debian package owns $lib" >&2
done | cut -d: -f1 | grep -v -e '^libc6$' -e '^libgcc-s1$' -e '^libstdc++6$' | sort -u
