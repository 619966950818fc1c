#!/usr/bin/env bash
# The shim against the real driver, every path: shim_cuda_client (linked against the fake's
# soname at build time) binds to the real libcuda.so.1 here. Cap: 1 GiB.
# Usage: driver_paths.sh SHIM CLIENT
set -u
shim=$1 client=$2
here=$(dirname "$0")
cap=1073741824
fails=0
run() { "$here/under_shim.sh" "$shim" $cap paths "$client" "$@"; }
expect() {  # expect OUTPUT PATTERN DESCRIPTION
  if grep -qE -- "$2" <<<"$1"; then echo "ok: $3"; else echo "FAIL: $3 (wanted /$2/)"; fails=$((fails + 1)); fi
}
out=$(run init alloc:600M alloc:600M free alloc:1000M info totalmem 2>&1)
rc=$?
[[ $rc == 77 ]] && exit 77
echo "$out"
expect "$out" "op=alloc:600M result=0 fn=shim" "direct cuMemAlloc_v2 under the cap"
expect "$out" "op=alloc:600M result=2 " "direct cuMemAlloc_v2 past the cap: CUDA_ERROR_OUT_OF_MEMORY"
expect "$out" "op=alloc:1000M result=0" "memory given back by cuMemFree_v2"
expect "$out" "op=info result=0 free=[0-9]+ total=$cap" "cuMemGetInfo_v2 total is the cap"
expect "$out" "op=totalmem result=0 bytes=$cap" "cuDeviceTotalMem_v2 is the cap"
for via in proc procv1 dlsym procdl; do
  out=$(run init alloc:600M:$via alloc:600M:$via 2>&1)
  echo "$out"
  expect "$out" "op=alloc:600M:$via result=0 fn=shim" "$via path wrapped"
  expect "$out" "op=alloc:600M:$via result=2 " "$via path capped"
done
out=$(run init async:600M:0 async:600M:2 freeasync async:600M:2 pool:600M defpool:500M:0 2>&1)
echo "$out"
expect "$out" "op=async:600M:2 result=2 " "cuMemAllocAsync_ptsz capped"
expect "$out" "op=freeasync result=0" "cuMemFreeAsync"
expect "$out" "op=pool:600M result=2" "pool allocation capped (1200 MiB held already)"
out=$(run init vmm:512M vmm:512M vmm:2M release vmm:2M vmm:64M:host managed:600M 2>&1)
echo "$out"
expect "$out" "op=vmm:512M result=0" "cuMemCreate under the cap"
expect "$out" "op=vmm:2M result=2" "cuMemCreate capped"
expect "$out" "op=release result=0" "cuMemRelease"
expect "$out" "op=vmm:2M result=0" "cuMemRelease gave the memory back"
expect "$out" "op=managed:600M result=2" "managed memory counts against the cap (514 MiB held)"
out=$(run init array:8192:8192 alloc:800M gpa:cuMemAlloc:13000:0 gpa:cuMemAllocAsync:13000:2 gpa:cuMemAllocAsync:13000:0 \
  gpa:cuLaunchKernel:13000:0 gpa:cuLaunchKernel:13000:2 gpa:cuGetProcAddress:13000:0 \
  gpa:cuCtxSynchronize:12000:0 gpa:cuCtxSynchronize:13000:0 gpa:cuGraphLaunch:13000:2 gpa:cuStreamCreate:13000:0 \
  gpa:cuMemAllocAsync:11000:0 gpa:cuNoSuchThing:13000:0 rtldnext 2>&1)
echo "$out"
expect "$out" "op=array:8192:8192 result=0" "array under the cap (256 MiB)"
expect "$out" "op=alloc:800M result=2" "arrays count against the cap"
expect "$out" "op=gpa:cuMemAlloc:13000:0 result=0 status=0 lib=shim name=cuMemAlloc_v2" "cuGetProcAddress cuMemAlloc -> cuMemAlloc_v2 wrapper"
expect "$out" "op=gpa:cuMemAllocAsync:13000:2 result=0 status=0 lib=shim name=cuMemAllocAsync_ptsz" "per-thread flag -> _ptsz wrapper"
expect "$out" "op=gpa:cuMemAllocAsync:13000:0 result=0 status=0 lib=shim name=cuMemAllocAsync$" "default flag -> legacy wrapper"
expect "$out" "op=gpa:cuLaunchKernel:13000:0 result=0 status=0 lib=shim name=cuLaunchKernel$" "cuLaunchKernel wrapped (arbiter gate)"
expect "$out" "op=gpa:cuLaunchKernel:13000:2 result=0 status=0 lib=shim name=cuLaunchKernel_ptsz" "per-thread cuLaunchKernel -> _ptsz wrapper"
expect "$out" "op=gpa:cuCtxSynchronize:12000:0 result=0 status=0 lib=shim name=cuCtxSynchronize$" "cuCtxSynchronize (CUDA 12) wrapped"
expect "$out" "op=gpa:cuCtxSynchronize:13000:0 result=0 status=0 lib=shim name=cuCtxSynchronize_v2" "cuCtxSynchronize (CUDA 13) -> _v2 wrapper"
expect "$out" "op=gpa:cuGraphLaunch:13000:2 result=0 status=0 lib=shim name=cuGraphLaunch_ptsz" "per-thread cuGraphLaunch -> _ptsz wrapper"
expect "$out" "op=gpa:cuStreamCreate:13000:0 result=0 status=0 lib=driver" "unhooked cuStreamCreate is the driver's own"
expect "$out" "op=gpa:cuGetProcAddress:13000:0 result=0 status=0 lib=shim name=cuGetProcAddress_v2" "cuGetProcAddress itself wrapped"
expect "$out" "op=gpa:cuMemAllocAsync:11000:0 result=[0-9]+ status=2" "version too old: VERSION_NOT_SUFFICIENT"
expect "$out" "op=gpa:cuNoSuchThing:13000:0 result=[0-9]+ status=1" "unknown symbol: SYMBOL_NOT_FOUND"
expect "$out" "op=rtldnext result=0 lib=shim" "dlsym(RTLD_NEXT) keeps its meaning"
echo "driver_paths: $fails failed"
exit $((fails > 0))
