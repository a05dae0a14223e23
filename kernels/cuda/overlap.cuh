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

template <class... Params, class... Args>
void launch_overlapped(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes, cudaStream_t stream,
                       Args&&... args)
{
    cudaLaunchAttribute attribute{};
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = shared_bytes;
    config.stream = stream;
    config.attrs = &attribute;
    config.numAttrs = 1;
    CRUCIBLE_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

} // namespace crucible::cuda
