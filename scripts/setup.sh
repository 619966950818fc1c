#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine that has only the
# toolchains: Debian packages (gRPC, protobuf, yaml-cpp, GoogleTest, clang for the fuzzer, pip
# when `python3 -m pip` is missing), and CUDA's driver and NVML headers from Python wheels into
# .deps/cuda/include. Idempotent and quick when everything is already there. Go is not installed
# here: scripts/test.sh checks it (scripts/go-toolchain.sh says what is needed).
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(
  cmake ninja-build g++ pkg-config
  libgrpc++-dev protobuf-compiler-grpc protobuf-compiler libprotobuf-dev libabsl-dev
  libyaml-cpp-dev nlohmann-json3-dev libcurl4-openssl-dev
  libgtest-dev libgmock-dev
  clang libclang-rt-14-dev
)
# CUDA 13.0 headers: the GPU machine's driver (580) and nvcc are CUDA 13.0, so build against the
# same API level.
cuda_runtime_version=13.0.96
nvml_dev_version=13.0.87
stamp=.deps/cuda/.stamp-$cuda_runtime_version-$nvml_dev_version
# They are fetched with `python3 -m pip download` (a download, not an install: no virtual
# environment needed). A fresh Debian has no pip; a pyenv or other python3 may bring its own.
if [ ! -f "$stamp" ]; then
  command -v python3 >/dev/null 2>&1 || apt_packages+=(python3)
  python3 -m pip --version >/dev/null 2>&1 || apt_packages+=(python3-pip)
fi
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -f "$stamp" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "setup: $(command -v python3) has no pip module (Debian's python3-pip is for /usr/bin/python3):" \
      "install pip for it, or put /usr/bin first on PATH" >&2
    exit 1
  fi
  echo "setup: fetching CUDA headers (nvidia-cuda-runtime $cuda_runtime_version, nvidia-nvml-dev $nvml_dev_version)"
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
    --python-version 3.11 -d "$tmp" \
    "nvidia-cuda-runtime==$cuda_runtime_version" "nvidia-nvml-dev==$nvml_dev_version"
  rm -rf .deps/cuda && mkdir -p .deps/cuda/include
  for whl in "$tmp"/*.whl; do
    python3 - "$whl" <<'PY'
import sys, zipfile, os
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if "/include/" in n and not n.endswith("/"):
            out = os.path.join(".deps/cuda/include", n.split("/include/", 1)[1])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(z.read(n))
PY
  done
  rm -rf "$tmp"
  test -f .deps/cuda/include/cuda.h && test -f .deps/cuda/include/nvml.h
  touch "$stamp"
fi
echo "setup: ok"
