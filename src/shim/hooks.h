/* The ONE table of functions the shim hooks. Everything else is generated from it: the exported
 * wrappers and their pointer types (shim.c), the cuGetProcAddress / dlsym lookup table (shim.c),
 * and the export list of the version script (exports.map.in). A function that is not here is
 * never touched: callers reach the driver directly.
 *
 * X(lib, ret, base, variant, since, flavour, hook, params, args)
 *   lib      CUDA or NVML: the library that holds the real function
 *   ret      return type (CUresult / nvmlReturn_t)
 *   base     the name callers pass to cuGetProcAddress (no _v2 / _ptsz suffix)
 *   variant  the exported, versioned name that the wrapper takes
 *   since    CUDA version that introduced this variant (cuGetProcAddress's version rule)
 *   flavour  PLAIN, or PTSZ for per-thread-default-stream variants (_ptsz / _ptds)
 *   hook     the hand-written policy function: hook(real, args...)
 *   params   the parameter list, as in cuda.h / nvml.h (the compiler checks it against them);
 *            () for a function without parameters
 *   args     the parameter names, in order
 *
 * Variants are those that CUDA 13.0's cuda.h declares (SLICER_TABLE_CUDA_VERSION). This header
 * includes nothing, so that the export list can be generated from it without the CUDA headers.
 */
#ifndef SLICER_SHIM_HOOKS_H_
#define SLICER_SHIM_HOOKS_H_

#define SLICER_TABLE_CUDA_VERSION 13000

#define SLICER_HOOKS(X)                                                                          \
  /* memory taken */                                                                             \
  X(CUDA, CUresult, cuMemAlloc, cuMemAlloc_v2, 3020, PLAIN, hook_mem_alloc,                      \
    (CUdeviceptr * dptr, size_t bytesize), (dptr, bytesize))                                     \
  X(CUDA, CUresult, cuMemAllocPitch, cuMemAllocPitch_v2, 3020, PLAIN, hook_mem_alloc_pitch,      \
    (CUdeviceptr * dptr, size_t * pPitch, size_t WidthInBytes, size_t Height,                    \
     unsigned int ElementSizeBytes),                                                             \
    (dptr, pPitch, WidthInBytes, Height, ElementSizeBytes))                                      \
  X(CUDA, CUresult, cuMemAllocManaged, cuMemAllocManaged, 6000, PLAIN, hook_mem_alloc_managed,   \
    (CUdeviceptr * dptr, size_t bytesize, unsigned int flags), (dptr, bytesize, flags))          \
  X(CUDA, CUresult, cuMemAllocAsync, cuMemAllocAsync, 11020, PLAIN, hook_mem_alloc_async,        \
    (CUdeviceptr * dptr, size_t bytesize, CUstream hStream), (dptr, bytesize, hStream))          \
  X(CUDA, CUresult, cuMemAllocAsync, cuMemAllocAsync_ptsz, 11020, PTSZ, hook_mem_alloc_async,    \
    (CUdeviceptr * dptr, size_t bytesize, CUstream hStream), (dptr, bytesize, hStream))          \
  X(CUDA, CUresult, cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync, 11020, PLAIN,              \
    hook_mem_alloc_from_pool, (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool,           \
                               CUstream hStream), (dptr, bytesize, pool, hStream))               \
  X(CUDA, CUresult, cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz, 11020, PTSZ,          \
    hook_mem_alloc_from_pool, (CUdeviceptr * dptr, size_t bytesize, CUmemoryPool pool,           \
                               CUstream hStream), (dptr, bytesize, pool, hStream))               \
  X(CUDA, CUresult, cuMemPoolCreate, cuMemPoolCreate, 11020, PLAIN, hook_mem_pool_create,        \
    (CUmemoryPool * pool, const CUmemPoolProps* poolProps), (pool, poolProps))                   \
  X(CUDA, CUresult, cuMemPoolDestroy, cuMemPoolDestroy, 11020, PLAIN, hook_mem_pool_destroy,     \
    (CUmemoryPool pool), (pool))                                                                 \
  X(CUDA, CUresult, cuDeviceGetDefaultMemPool, cuDeviceGetDefaultMemPool, 11020, PLAIN,          \
    hook_device_get_mem_pool, (CUmemoryPool * pool_out, CUdevice dev), (pool_out, dev))         \
  X(CUDA, CUresult, cuDeviceGetMemPool, cuDeviceGetMemPool, 11020, PLAIN,                        \
    hook_device_get_mem_pool, (CUmemoryPool * pool, CUdevice dev), (pool, dev))                 \
  X(CUDA, CUresult, cuMemCreate, cuMemCreate, 10020, PLAIN, hook_mem_create,                     \
    (CUmemGenericAllocationHandle * handle, size_t size, const CUmemAllocationProp* prop,        \
     unsigned long long flags), (handle, size, prop, flags))                                     \
  X(CUDA, CUresult, cuArrayCreate, cuArrayCreate_v2, 3020, PLAIN, hook_array_create,             \
    (CUarray * pHandle, const CUDA_ARRAY_DESCRIPTOR* pAllocateArray), (pHandle, pAllocateArray)) \
  X(CUDA, CUresult, cuArray3DCreate, cuArray3DCreate_v2, 3020, PLAIN, hook_array3d_create,       \
    (CUarray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR* pAllocateArray),                          \
    (pHandle, pAllocateArray))                                                                   \
  X(CUDA, CUresult, cuMipmappedArrayCreate, cuMipmappedArrayCreate, 5000, PLAIN,                 \
    hook_mipmapped_array_create,                                                                 \
    (CUmipmappedArray * pHandle, const CUDA_ARRAY3D_DESCRIPTOR* pMipmappedArrayDesc,             \
     unsigned int numMipmapLevels), (pHandle, pMipmappedArrayDesc, numMipmapLevels))             \
  /* memory given back */                                                                        \
  X(CUDA, CUresult, cuMemFree, cuMemFree_v2, 3020, PLAIN, hook_mem_free, (CUdeviceptr dptr),     \
    (dptr))                                                                                      \
  X(CUDA, CUresult, cuMemFreeAsync, cuMemFreeAsync, 11020, PLAIN, hook_mem_free_async,           \
    (CUdeviceptr dptr, CUstream hStream), (dptr, hStream))                                       \
  X(CUDA, CUresult, cuMemFreeAsync, cuMemFreeAsync_ptsz, 11020, PTSZ, hook_mem_free_async,       \
    (CUdeviceptr dptr, CUstream hStream), (dptr, hStream))                                       \
  X(CUDA, CUresult, cuMemRelease, cuMemRelease, 10020, PLAIN, hook_mem_release,                  \
    (CUmemGenericAllocationHandle handle), (handle))                                             \
  X(CUDA, CUresult, cuArrayDestroy, cuArrayDestroy, 2000, PLAIN, hook_array_destroy,             \
    (CUarray hArray), (hArray))                                                                  \
  X(CUDA, CUresult, cuMipmappedArrayDestroy, cuMipmappedArrayDestroy, 5000, PLAIN,               \
    hook_mipmapped_array_destroy, (CUmipmappedArray hMipmappedArray), (hMipmappedArray))         \
  /* work submitted: gated by the arbiter's lease when SLICER_ARBITER_SOCKET is set */          \
  X(CUDA, CUresult, cuLaunchKernel, cuLaunchKernel, 4000, PLAIN, hook_launch_kernel,             \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,          \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                     \
     unsigned int sharedMemBytes, CUstream hStream, void** kernelParams, void** extra),          \
    (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,  \
     kernelParams, extra))                                                                       \
  X(CUDA, CUresult, cuLaunchKernel, cuLaunchKernel_ptsz, 7000, PTSZ, hook_launch_kernel_ptsz,    \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,          \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                     \
     unsigned int sharedMemBytes, CUstream hStream, void** kernelParams, void** extra),          \
    (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,  \
     kernelParams, extra))                                                                       \
  X(CUDA, CUresult, cuLaunchKernelEx, cuLaunchKernelEx, 11060, PLAIN, hook_launch_kernel_ex,     \
    (const CUlaunchConfig* config, CUfunction f, void** kernelParams, void** extra),             \
    (config, f, kernelParams, extra))                                                            \
  X(CUDA, CUresult, cuLaunchKernelEx, cuLaunchKernelEx_ptsz, 11060, PTSZ,                        \
    hook_launch_kernel_ex_ptsz,                                                                  \
    (const CUlaunchConfig* config, CUfunction f, void** kernelParams, void** extra),             \
    (config, f, kernelParams, extra))                                                            \
  X(CUDA, CUresult, cuLaunchCooperativeKernel, cuLaunchCooperativeKernel, 9000, PLAIN,           \
    hook_launch_cooperative,                                                                     \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,          \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                     \
     unsigned int sharedMemBytes, CUstream hStream, void** kernelParams),                        \
    (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,  \
     kernelParams))                                                                              \
  X(CUDA, CUresult, cuLaunchCooperativeKernel, cuLaunchCooperativeKernel_ptsz, 9000, PTSZ,       \
    hook_launch_cooperative_ptsz,                                                                \
    (CUfunction f, unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,          \
     unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,                     \
     unsigned int sharedMemBytes, CUstream hStream, void** kernelParams),                        \
    (f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,  \
     kernelParams))                                                                              \
  X(CUDA, CUresult, cuGraphLaunch, cuGraphLaunch, 10000, PLAIN, hook_graph_launch,               \
    (CUgraphExec hGraphExec, CUstream hStream), (hGraphExec, hStream))                           \
  X(CUDA, CUresult, cuGraphLaunch, cuGraphLaunch_ptsz, 10000, PTSZ, hook_graph_launch_ptsz,      \
    (CUgraphExec hGraphExec, CUstream hStream), (hGraphExec, hStream))                           \
  /* synchronization: ends the process's busy interval on the GPU (arbiter accounting) */        \
  X(CUDA, CUresult, cuCtxSynchronize, cuCtxSynchronize, 2000, PLAIN, hook_ctx_synchronize, (),   \
    ())                                                                                          \
  X(CUDA, CUresult, cuCtxSynchronize, cuCtxSynchronize_v2, 13000, PLAIN,                         \
    hook_ctx_synchronize_v2, (CUcontext ctx), (ctx))                                             \
  X(CUDA, CUresult, cuStreamSynchronize, cuStreamSynchronize, 2000, PLAIN,                       \
    hook_stream_synchronize, (CUstream hStream), (hStream))                                      \
  X(CUDA, CUresult, cuStreamSynchronize, cuStreamSynchronize_ptsz, 7000, PTSZ,                   \
    hook_stream_synchronize_ptsz, (CUstream hStream), (hStream))                                 \
  X(CUDA, CUresult, cuEventSynchronize, cuEventSynchronize, 2000, PLAIN, hook_event_synchronize, \
    (CUevent hEvent), (hEvent))                                                                  \
  /* copies to the host, which wait for the stream's work (PyTorch's .item() and .cpu() wait  \
   * here, not in a synchronize): their wait is the process's blocked time (arbiter LOAD) */  \
  X(CUDA, CUresult, cuMemcpyDtoH, cuMemcpyDtoH_v2, 3020, PLAIN, hook_memcpy_dtoh,                \
    (void* dstHost, CUdeviceptr srcDevice, size_t ByteCount), (dstHost, srcDevice, ByteCount))   \
  X(CUDA, CUresult, cuMemcpyDtoH, cuMemcpyDtoH_v2_ptds, 7000, PTSZ, hook_memcpy_dtoh_ptds,       \
    (void* dstHost, CUdeviceptr srcDevice, size_t ByteCount), (dstHost, srcDevice, ByteCount))   \
  X(CUDA, CUresult, cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2, 3020, PLAIN, hook_memcpy_dtoh_async, \
    (void* dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream),                  \
    (dstHost, srcDevice, ByteCount, hStream))                                                    \
  X(CUDA, CUresult, cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2_ptsz, 7000, PTSZ,                    \
    hook_memcpy_dtoh_async_ptsz,                                                                 \
    (void* dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream),                  \
    (dstHost, srcDevice, ByteCount, hStream))                                                    \
  X(CUDA, CUresult, cuMemcpy, cuMemcpy, 4000, PLAIN, hook_memcpy,                                \
    (CUdeviceptr dst, CUdeviceptr src, size_t ByteCount), (dst, src, ByteCount))                 \
  X(CUDA, CUresult, cuMemcpy, cuMemcpy_ptds, 7000, PTSZ, hook_memcpy_ptds,                       \
    (CUdeviceptr dst, CUdeviceptr src, size_t ByteCount), (dst, src, ByteCount))                 \
  X(CUDA, CUresult, cuMemcpyAsync, cuMemcpyAsync, 4000, PLAIN, hook_memcpy_async,                \
    (CUdeviceptr dst, CUdeviceptr src, size_t ByteCount, CUstream hStream),                      \
    (dst, src, ByteCount, hStream))                                                              \
  X(CUDA, CUresult, cuMemcpyAsync, cuMemcpyAsync_ptsz, 7000, PTSZ, hook_memcpy_async_ptsz,       \
    (CUdeviceptr dst, CUdeviceptr src, size_t ByteCount, CUstream hStream),                      \
    (dst, src, ByteCount, hStream))                                                              \
  /* what programs size themselves by */                                                         \
  X(CUDA, CUresult, cuMemGetInfo, cuMemGetInfo_v2, 3020, PLAIN, hook_mem_get_info,               \
    (size_t * free, size_t * total), (free, total))                                              \
  X(CUDA, CUresult, cuDeviceTotalMem, cuDeviceTotalMem_v2, 3020, PLAIN, hook_device_total_mem,   \
    (size_t * bytes, CUdevice dev), (bytes, dev))                                                \
  /* how the CUDA runtime finds everything else */                                               \
  X(CUDA, CUresult, cuGetProcAddress, cuGetProcAddress, 11030, PLAIN, hook_get_proc_address_v1,  \
    (const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags),                         \
    (symbol, pfn, cudaVersion, flags))                                                           \
  X(CUDA, CUresult, cuGetProcAddress, cuGetProcAddress_v2, 12000, PLAIN, hook_get_proc_address,  \
    (const char* symbol, void** pfn, int cudaVersion, cuuint64_t flags,                          \
     CUdriverProcAddressQueryResult* symbolStatus),                                              \
    (symbol, pfn, cudaVersion, flags, symbolStatus))                                             \
  /* NVML memory queries (nvidia-smi-like tools, pynvml) */                                      \
  X(NVML, nvmlReturn_t, nvmlDeviceGetMemoryInfo, nvmlDeviceGetMemoryInfo, 0, PLAIN,              \
    hook_nvml_memory_info, (nvmlDevice_t device, nvmlMemory_t * memory), (device, memory))       \
  X(NVML, nvmlReturn_t, nvmlDeviceGetMemoryInfo_v2, nvmlDeviceGetMemoryInfo_v2, 0, PLAIN,        \
    hook_nvml_memory_info_v2, (nvmlDevice_t device, nvmlMemory_v2_t * memory), (device, memory))

#endif /* SLICER_SHIM_HOOKS_H_ */
