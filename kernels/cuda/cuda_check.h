// Error checks for CUDA runtime calls and kernel launches (host code only).
// Every failure becomes a crucible::Error naming the file, the line, the CUDA
// error and the call that failed.
#pragma once

#include "kernels/error.h"

#include <cuda_runtime.h>

namespace crucible::cuda {

[[noreturn]] void throw_cuda_error(const char* file, int line, cudaError_t err, const char* what);

} // namespace crucible::cuda

#define CRUCIBLE_CUDA_CHECK(expr)                                                         \
    do {                                                                                  \
        const cudaError_t crucible_err_ = (expr);                                         \
        if (crucible_err_ != cudaSuccess)                                                 \
            ::crucible::cuda::throw_cuda_error(__FILE__, __LINE__, crucible_err_, #expr); \
    } while (0)

// After every kernel launch: configuration errors surface here, at the launch.
#define CRUCIBLE_CUDA_LAUNCH_CHECK() CRUCIBLE_CUDA_CHECK(cudaGetLastError())
