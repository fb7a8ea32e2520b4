# Cross-compile edgeq's native libraries for a Jetson (aarch64, JetPack 6: CUDA 12.6, TensorRT 10.3)
# on an x86-64 host:
#   cmake -S . -B build-jetson -DCMAKE_TOOLCHAIN_FILE=targets/toolchains/aarch64-jetpack6.cmake \
#         -DEDGEQ_SYSROOT=/path/to/jetpack/rootfs [-DEDGEQ_CUDA=ON -DTENSORRT_INCLUDE_DIR=... or -DTENSORRT_ROOT=...]
# Without EDGEQ_SYSROOT only the CPU kernel library can be built (it needs libc/libstdc++ alone,
# which Debian's g++-aarch64-linux-gnu brings). CUDA and TensorRT need the JetPack root's
# aarch64 CUDA runtime and TensorRT headers and libraries.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CUDA_HOST_COMPILER aarch64-linux-gnu-g++)
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 87)
endif()
if(EDGEQ_SYSROOT)
  set(CMAKE_SYSROOT ${EDGEQ_SYSROOT})
  set(CUDAToolkit_ROOT ${EDGEQ_SYSROOT}/usr/local/cuda/targets/aarch64-linux)
  set(CMAKE_FIND_ROOT_PATH ${EDGEQ_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
  set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
  set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
endif()
