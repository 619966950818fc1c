/* Link-time stand-in for libcuda.so.1: shim_cuda_client links against this (soname libcuda.so.1,
 * C only, no dependencies) so that which driver it meets is decided at run time alone, by
 * LD_LIBRARY_PATH: the fake in CPU tests, the real driver on the GPU machine. Never loaded: it
 * lives in its own folder that no test puts on a search path. Types do not matter to the linker. */
#define STUB(name) \
  int name(void) { return 999; }
STUB(cuInit)
STUB(cuDevicePrimaryCtxRetain)
STUB(cuCtxSetCurrent)
STUB(cuMemAlloc_v2)
STUB(cuGetProcAddress_v2)
STUB(cuGetProcAddress)
STUB(cuMemFree_v2)
STUB(cuMemFreeAsync)
STUB(cuDeviceGetDefaultMemPool)
STUB(cuMemPoolCreate)
STUB(cuMemAllocFromPoolAsync)
STUB(cuMemAllocFromPoolAsync_ptsz)
STUB(cuMemCreate)
STUB(cuMemRelease)
STUB(cuMemAllocManaged)
STUB(cuMemAllocPitch_v2)
STUB(cuArrayCreate_v2)
STUB(cuArrayDestroy)
STUB(cuMemGetInfo_v2)
STUB(cuDeviceTotalMem_v2)
STUB(cuModuleLoadData)
STUB(cuModuleGetFunction)
STUB(cuLaunchKernel)
STUB(cuStreamSynchronize)
