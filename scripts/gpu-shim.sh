#!/usr/bin/env bash
# Everything the shim needs a GPU for, in one call on the GPU machine (it has nvcc, cmake,
# PyTorch, no network, no gRPC): builds the shim, the fakes and the GPU workloads with
# SLICER_DAEMONS=OFF, runs the CPU tests and the `gpu`-labelled tests, checks JAX's sizing, and
# measures the shim's overhead against the same runs without it. Results go under $OUT (default
# out/gpu-shim); a short summary table is printed last.
# Usage: scripts/gpu-shim.sh [all|tests|bench|tests,bench]
#   SLICER_GPU_TEST_REGEX limits the gpu-labelled tests run (ctest -R); SLICER_BENCH_ROUNDS (7).
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
OUT=${OUT:-$PWD/out/gpu-shim}
mkdir -p "$OUT"
B=${SLICER_GPU_BUILD:-/tmp/slicer-gpu-build}
jobs=$(nproc)
summary=()
say() { echo "== $*"; }
# ctest_summary LOG: ctest's pass line and how many tests it skipped, by name (ctest counts a
# skipped test as passed: "100% tests passed" alone would hide a GPU test that never ran).
ctest_summary() {
  local line skipped
  line=$(grep -E 'tests passed' "$1" | tail -1)
  skipped=$(sed -n 's/^[[:space:]]*[0-9]* - \(.*\) (Skipped)$/\1/p' "$1" | sort -u)
  echo "${line:-no ctest result (see $1)}; $(grep -c . <<<"$skipped") skipped${skipped:+: $(echo $skipped)}"
}

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  nvcc --version | tail -2
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' 2>&1
  ldd --version | head -1
  uname -r
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# googletest: installed, or built from the copy carried in .deps/googletest.
prefix=()
if ! ls /usr/lib/*/cmake/GTest /usr/lib/cmake/GTest /usr/local/lib/cmake/GTest >/dev/null 2>&1; then
  if [[ -d .deps/googletest ]]; then
    say "building googletest from .deps/googletest"
    cmake -S .deps/googletest -B /tmp/gtest-build -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX=/tmp/gtest \
      -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build /tmp/gtest-build -j"$jobs" --target install >/dev/null
    prefix=(-DCMAKE_PREFIX_PATH=/tmp/gtest)
  fi
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
# Only this script's targets: other components may be mid-change in the same tree.
targets=(slicer_shim fake_cuda shim_cuda_client shim_config_test shim_ledger_test shim_integration_test)
command -v nvcc >/dev/null && targets+=(gpu_runtime_cap)
say "configure + build ($B)"
if ! cmake -S . -B "$B" "${gen[@]}" -DSLICER_DAEMONS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo "${prefix[@]}" \
    >"$OUT/build.log" 2>&1 || ! cmake --build "$B" -j"$jobs" --target "${targets[@]}" >>"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "BUILD FAILED"
  exit 1
fi

if [[ $what == all || $what == *tests* ]]; then
  say "CPU tests (fake driver)"
  ctest --test-dir "$B" -LE gpu -R 'shim|Shim|Ledger' --output-on-failure -j4 >"$OUT/ctest-cpu.log" 2>&1
  summary+=("cpu tests|$(ctest_summary "$OUT/ctest-cpu.log")")
  say "GPU tests"
  ctest --test-dir "$B" -L gpu -R "${SLICER_GPU_TEST_REGEX:-.}" -V >"$OUT/ctest-gpu.log" 2>&1
  grep -E '^[0-9]+: (ok|FAIL|\[|mem_get_info|allocated|at the cap|neighbour|model|capped|driver_paths|fill|async)' \
    "$OUT/ctest-gpu.log" | sed 's/^[0-9]*: //' | head -80
  grep -E 'Test +#[0-9]+: gpu_' "$OUT/ctest-gpu.log"
  summary+=("gpu tests|$(ctest_summary "$OUT/ctest-gpu.log")")

  say "JAX sizes itself to the cap (report only)"
  tests/gpu/under_shim.sh "$B/libslicer.so" 8589934592 jax python3 -c '
import jax, jax.numpy as jnp
x = jnp.ones((1024, 1024)); x.block_until_ready()
s = jax.devices()[0].memory_stats()
print("jax bytes_limit", s.get("bytes_limit"), "cap", 8589934592)' >"$OUT/jax.txt" 2>&1
  tail -3 "$OUT/jax.txt"
  summary+=("jax bytes_limit (cap 8 GiB)|$(grep -o 'bytes_limit [0-9]*' "$OUT/jax.txt" || echo 'not run')")
fi

if [[ $what == all || $what == *bench* ]]; then
  say "overhead: same binary with and without the shim, interleaved"
  nvcc -O2 -gencode=arch=compute_90,code=sm_90 bench/shim/overhead.cu -o /tmp/slicer-overhead
  bench="$OUT/bench.txt"
  : >"$bench"
  pin=()
  command -v taskset >/dev/null && pin=(taskset -c 2)
  for round in $(seq "${SLICER_BENCH_ROUNDS:-7}"); do
    for cfg in base shim; do
      for args in "launch 100000" "alloc 2000 1048576" "async 100000 1048576"; do
        if [[ $cfg == base ]]; then
          line=$("${pin[@]}" /tmp/slicer-overhead $args)
        else
          line=$(tests/gpu/under_shim.sh "$B/libslicer.so" 68719476736 bench "${pin[@]}" /tmp/slicer-overhead $args)
        fi
        echo "round=$round cfg=$cfg $line" | tee -a "$bench"
      done
    done
  done
  # Median over rounds per (mode, cfg); ratio and added microseconds per operation.
  table=$(awk '{for(i=1;i<=NF;i++){split($i,kv,"="); v[kv[1]]=kv[2]}
              k=v["mode"]; x[k","v["cfg"]]=x[k","v["cfg"]]" "v["median_us"]; modes[k]=1
              c=k","v["cfg"]; if(!(c in lo) || v["min_us"]+0<lo[c]) lo[c]=v["min_us"]+0}
       function med(s,  a,n,i,j,t){n=split(s,a," "); for(i=1;i<=n;i++)for(j=i+1;j<=n;j++)if(a[j]<a[i]){t=a[i];a[i]=a[j];a[j]=t}; return a[int((n+1)/2)]}
       END{for(m in modes){b=med(x[m",base"]); s=med(x[m",shim"]);
           printf "overhead %s|median of rounds: base %.3f us, shim %.3f us, ratio %.4f (%+.3f us/op); best: base %.3f, shim %.3f, ratio %.4f\n", m, b, s, s/b, s-b, lo[m",base"], lo[m",shim"], lo[m",shim"]/lo[m",base"]}}' "$bench")
  while IFS= read -r l; do summary+=("$l"); done <<<"$table"
fi

{
  echo
  echo "| check | result |"
  echo "|---|---|"
  for s in "${summary[@]}"; do echo "| ${s%%|*} | ${s#*|} |"; done
} | tee "$OUT/summary.md"
