// Programmatic dependent launch (Hopper and later): back-to-back kernels of a
// decode step overlap their launch and start-up with the kernel before them.
//
// A kernel started with launch_overlapped may begin while the previous kernel
// in the stream still runs. Before wait_for_previous_kernel() it may only
// read memory that kernel does not write (a decode step's weights: in a step
// the kernel before is always a projection, attention or the embedding);
// after it, everything the earlier kernels wrote is visible. It
// calls allow_next_kernel() once it has waited, so the next overlapped
// kernel starts its own prologue (the weights it will stream) while this one
// computes, and at most one kernel waits ahead. Every block must wait, even
// one with nothing to do, so the grid cannot finish before its predecessor.
// Older GPUs ignore the launch attribute and the calls are no-ops.
#pragma once

#include "kernels/cuda/cuda_check.h"

#include <cuda_runtime.h>

#include <utility>

namespace crucible::cuda {

__device__ __forceinline__ void wait_for_previous_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_next_kernel()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

struct LaunchShape {
    dim3 grid, block;
    size_t shared_bytes = 0;
    dim3 cluster{1, 1, 1};   // thread-block cluster dimensions (1: none)
};

template <class... Params, class... Args>
void launch_overlapped(void (*kernel)(Params...), const LaunchShape& shape, cudaStream_t stream, Args&&... args)
{
    cudaLaunchAttribute attributes[2]{};
    attributes[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attributes[0].val.programmaticStreamSerializationAllowed = 1;
    unsigned count = 1;
    if (shape.cluster.x * shape.cluster.y * shape.cluster.z > 1) {
        attributes[1].id = cudaLaunchAttributeClusterDimension;
        attributes[1].val.clusterDim.x = shape.cluster.x;
        attributes[1].val.clusterDim.y = shape.cluster.y;
        attributes[1].val.clusterDim.z = shape.cluster.z;
        count = 2;
    }
    cudaLaunchConfig_t config{};
    config.gridDim = shape.grid;
    config.blockDim = shape.block;
    config.dynamicSmemBytes = shape.shared_bytes;
    config.stream = stream;
    config.attrs = attributes;
    config.numAttrs = count;
    CRUCIBLE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

} // namespace crucible::cuda
