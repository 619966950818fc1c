#!/usr/bin/env bash
# Runs every test that can run on this machine: installs dependencies, builds, runs ctest (unit,
# integration, fuzz smoke, kubelet conformance, deploy validation). Tests labelled `gpu` are
# skipped unless a GPU is present. Then the same sources under sanitizers (docs/sanitizers.md):
# build-asan (ASan+UBSan: unit and integration tests, the shim's included) and build-tsan (TSan:
# the arbiter, the plugin and the arbiter's client library).
# Usage: scripts/test.sh [extra ctest args for the first run]
#   SLICER_SANITIZERS="asan tsan" (default) | "asan" | "tsan" | "" (none): which sanitizer runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The Go tests need the toolchain their go.mod names: say so now, not as a ctest failure later.
source scripts/go-toolchain.sh
for mod in tests/conformance/go.mod tests/deploy/go.mod; do
  (slicer_go_setup "$mod" >/dev/null) || { echo "test: no Go toolchain for $mod (above)" >&2; exit 1; }
done
jobs=()
[[ -n ${SLICER_BUILD_JOBS:-} ]] && jobs=(-j "$SLICER_BUILD_JOBS")

build=${SLICER_BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" "${jobs[@]}"
label_args=()
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  label_args=(-LE gpu)
  echo "test: no GPU here: tests labelled gpu are skipped"
fi
start=$(date +%s)
ctest --test-dir "$build" --output-on-failure "${label_args[@]}" "$@"
echo "test: suite: $(($(date +%s) - start))s"

# sanitized NAME SANITIZE LABEL_REGEX_ARGS... -- TARGETS...: configures and builds build-NAME with
# -DSLICER_SANITIZE=SANITIZE (only TARGETS when given) and runs ctest there with the label
# arguments. A finding fails the test it happened in (no recovery, halt on the first report).
sanitized() {
  local name=$1 sanitize=$2 dir=build-$1 t0 t1
  shift 2
  local ctest_args=() targets=()
  while (($#)) && [[ $1 != -- ]]; do ctest_args+=("$1"); shift; done
  if (($#)); then shift; targets=(--target "$@"); fi
  t0=$(date +%s)
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLICER_SANITIZE="$sanitize" \
    >/dev/null
  cmake --build "$dir" "${jobs[@]}" "${targets[@]}"
  t1=$(date +%s)
  # verify_asan_link_order=0: `slicer run` puts the shim before the runtime in LD_PRELOAD (the
  # tests preload the runtime first where they set LD_PRELOAD themselves; docs/sanitizers.md).
  ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:verify_asan_link_order=0:detect_stack_use_after_return=1:intercept_tls_get_addr=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
  LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0" \
    ctest --test-dir "$dir" --output-on-failure "${ctest_args[@]}"
  echo "test: $name ($sanitize): build $((t1 - t0))s, tests $(($(date +%s) - t1))s"
}
# The label sets: gpu (the real driver and PyTorch are not instrumented, even where there is a
# GPU), conformance and deploy (Go and Helm; no C++ of ours runs there that the unit and
# integration tests do not run) are left out; TSan runs the threaded daemons.
exclude='gpu|conformance|deploy'
for s in ${SLICER_SANITIZERS-asan tsan}; do
  case $s in
    asan) sanitized asan address,undefined -LE "$exclude" ;;
    # Not arbiter_podresources_test nor plugin_integration_test (PluginTest.*): each runs an
    # in-process gRPC server and client (the PodResources API; the simulated kubelet), whose
    # hand-offs between gRPC's threads go through Debian's abseil, which is not built with TSan
    # (all of their reports were inside gRPC and abseil; docs/sanitizers.md).
    tsan) sanitized tsan thread -L 'arbiter|plugin' -LE "$exclude" -E '^PluginTest\.' -- \
      arbiter_scheduler_test arbiter_daemon_test arbiter_test_client \
      arbiter_config_metrics_test plugin_test slicer fake_nvml \
      arbiter_shim_test slicer_shim shim_cuda_client fake_cuda \
      mps_test mps_daemon_test fake_mps_control fake_mps_control_test ;;
    *) echo "test: SLICER_SANITIZERS: unknown '$s' (asan, tsan)" >&2; exit 2 ;;
  esac
done
