// Greedy choice over rows of logits on CUDA (Backend::argmax_rows): one block
// per row finds the largest logit (lowest id among equals) and the row's
// softmax normaliser, so a greedy decode step sends 8 bytes per sequence to
// the host instead of its whole row of logits. Launch configuration depends
// on shapes only: the step stays capturable as a CUDA graph.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_common.cuh"

namespace crucible {

namespace {

using namespace cuda;

constexpr int kArgmaxThreads = 512;

// The warp's largest (best, index) pair, lower index among equals, in every lane.
__device__ __forceinline__ void warp_argmax(float& best, int& index)
{
    for (int offset = 16; offset > 0; offset /= 2) {
        const float v = __shfl_xor_sync(0xffffffffu, best, offset);
        const int j = __shfl_xor_sync(0xffffffffu, index, offset);
        if (v > best || (v == best && j < index)) {
            best = v;
            index = j;
        }
    }
}

template <class T>
__global__ void __launch_bounds__(kArgmaxThreads)
    argmax_rows_kernel(int32_t* __restrict__ ids, float* __restrict__ probs, const T* __restrict__ logits, int64_t vocab)
{
    __shared__ float shared_value[32];
    __shared__ int shared_index[32];
    __shared__ float shared_sum[32];
    const T* row = logits + int64_t(blockIdx.x) * vocab;

    // Each thread's best, then the warp's, then the block's; ties go to the lower id.
    float best = -INFINITY;
    int index = 0x7fffffff;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = to_f(row[i]);
        if (v > best) {   // strided ascending: the first of equals wins
            best = v;
            index = int(i);
        }
    }
    warp_argmax(best, index);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) {
        shared_value[warp] = best;
        shared_index[warp] = index;
    }
    __syncthreads();
    if (warp == 0) {
        best = lane < warps ? shared_value[lane] : -INFINITY;
        index = lane < warps ? shared_index[lane] : 0x7fffffff;
        warp_argmax(best, index);
        if (lane == 0) {
            shared_value[0] = best;
            shared_index[0] = index;
        }
    }
    __syncthreads();
    best = shared_value[0];
    index = shared_index[0];

    float sum = 0.0f;
    for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += __expf(to_f(row[i]) - best);
    sum = block_sum(sum, shared_sum);
    if (threadIdx.x == 0) {
        ids[blockIdx.x] = index == 0x7fffffff ? 0 : index;   // a row of NaNs: some id, probability NaN
        probs[blockIdx.x] = 1.0f / sum;
    }
}

} // namespace

void CudaBackend::argmax_rows(Tensor ids, Tensor probs, Tensor logits)
{
    CRUCIBLE_CHECK(logits.shape.rank == 2, "argmax_rows: logits must be [rows, vocab], got " + logits.shape.str());
    const int64_t rows = logits.shape[0], vocab = logits.shape[1];
    expect_dtype(ids, DType::i32, "argmax_rows ids");
    expect_dtype(probs, DType::f32, "argmax_rows probs");
    expect_shape(ids, Shape{rows}, "argmax_rows ids");
    expect_shape(probs, Shape{rows}, "argmax_rows probs");
    CRUCIBLE_CHECK(vocab > 0 && vocab < int64_t(1) << 31, "argmax_rows: the vocabulary must have 1 to 2^31 - 1 entries");
    if (rows == 0) return;
    dispatch_act(logits.dtype, "argmax_rows", [&](auto tag) {
        using T = decltype(tag);
        argmax_rows_kernel<T><<<unsigned(rows), kArgmaxThreads, 0, m_stream>>>(ids.as<int32_t>(), probs.as<float>(),
                                                                                logits.as<T>(), vocab);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace crucible
