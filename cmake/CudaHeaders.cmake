# cuda.h and nvml.h for builds on machines without a CUDA toolkit. Nothing links against a GPU
# library at build time: the headers give types and prototypes, the libraries are dlopen'ed.
# Search order: -DCUDA_HEADERS_DIR, .deps/cuda/include (scripts/setup.sh), a CUDA toolkit.
find_path(SLICER_CUDA_INCLUDE_DIR cuda.h
  HINTS ${CUDA_HEADERS_DIR} ${CMAKE_SOURCE_DIR}/.deps/cuda/include
        /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include
  NO_DEFAULT_PATH)
find_path(SLICER_NVML_INCLUDE_DIR nvml.h
  HINTS ${CUDA_HEADERS_DIR} ${CMAKE_SOURCE_DIR}/.deps/cuda/include
        /usr/local/cuda/include /usr/local/cuda/targets/x86_64-linux/include
  NO_DEFAULT_PATH)
if(NOT SLICER_CUDA_INCLUDE_DIR OR NOT SLICER_NVML_INCLUDE_DIR)
  message(FATAL_ERROR "cuda.h/nvml.h not found: run scripts/setup.sh (fetches them into .deps/) "
                      "or pass -DCUDA_HEADERS_DIR=<dir with cuda.h and nvml.h>")
endif()
add_library(cuda_headers INTERFACE)
target_include_directories(cuda_headers SYSTEM INTERFACE
  ${SLICER_CUDA_INCLUDE_DIR} ${SLICER_NVML_INCLUDE_DIR})
