// Greedy choice over rows of logits on CUDA (Backend::argmax_rows): the
// largest logit of each row (lowest id among equals) and the row's softmax
// normaliser, so a greedy decode step sends 8 bytes per sequence to the host
// instead of its whole row of logits. In a decode burst the ids also go to
// the next step's token slots on the device.
//
// A row is split into chunks of kChunk logits, one block each; a thread
// reads kPerThread consecutive logits in one 16-byte load where the row
// allows, so an 8K vocabulary is one block and one load per thread. A block
// keeps its best logit, its id and the sum of exp(logit − best) over its
// chunk; the last block of a row to finish (a counter per row, reset by that
// block) combines the chunks. Launched overlapped (overlap.cuh) behind the
// logits' projection. Launch configuration depends on shapes only: the step
// stays capturable as a CUDA graph.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/overlap.cuh"

namespace crucible {

namespace {

using namespace cuda;

constexpr int kThreads = 1024;
constexpr int kPerThread = 8;    // a vocabulary of 8192 is one block, 32768 four
constexpr int kChunk = kThreads * kPerThread;
constexpr int kNoIndex = 0x7fffffff;

// Takes (v, j) into the running (best, index) when it is larger, or equal with a lower id.
__device__ __forceinline__ void take_better(float& best, int& index, float v, int j)
{
    if (v > best || (v == best && j < index)) {
        best = v;
        index = j;
    }
}

// The warp's best (value, index) pair, in every lane.
__device__ __forceinline__ void warp_argmax(float& best, int& index)
{
    for (int offset = 16; offset > 0; offset /= 2)
        take_better(best, index, __shfl_xor_sync(0xffffffffu, best, offset),
                    __shfl_xor_sync(0xffffffffu, index, offset));
}

// The block's best pair, in every thread.
__device__ __forceinline__ void block_argmax(float& best, int& index)
{
    __shared__ float values[32];
    __shared__ int indices[32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    warp_argmax(best, index);
    if (lane == 0) {
        values[warp] = best;
        indices[warp] = index;
    }
    __syncthreads();
    best = lane < warps ? values[lane] : -INFINITY;
    index = lane < warps ? indices[lane] : kNoIndex;
    warp_argmax(best, index);
    __syncthreads();   // the arrays may be reused
}

// Per chunk: best logit, its id, Σ exp(logit − best).
struct ChunkResults {
    float* best;
    int* index;
    float* sum;
    int* finished;   // chunks done per row, zero between launches
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    argmax_rows_kernel(int32_t* __restrict__ ids, float* __restrict__ probs, int32_t* __restrict__ next_tokens,
                       const T* __restrict__ logits, int64_t vocab, bool vectorised, ChunkResults chunks)
{
    __shared__ float shared_sum[32];
    __shared__ bool last;
    wait_for_previous_kernel();   // the logits' projection
    allow_next_kernel();
    const int64_t row = blockIdx.y;
    const int chunk = int(blockIdx.x), count = int(gridDim.x);
    const int64_t first = int64_t(chunk) * kChunk;
    const T* values = logits + row * vocab;

    // This thread's kPerThread consecutive logits.
    const int64_t start = first + int64_t(threadIdx.x) * kPerThread;
    float v[kPerThread];
    if (vectorised && start + kPerThread <= vocab) {
        load8(v, values + start);
    } else {
#pragma unroll
        for (int k = 0; k < kPerThread; ++k) v[k] = start + k < vocab ? to_f(values[start + k]) : -INFINITY;
    }
    float best = -INFINITY;
    int index = kNoIndex;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k)   // ascending ids: the first of equals wins
        if (v[k] > best && start + k < vocab) {
            best = v[k];
            index = int(start + k);
        }
    block_argmax(best, index);
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k)
        if (start + k < vocab) sum += __expf(v[k] - best);
    sum = block_sum(sum, shared_sum);

    if (count == 1) {
        if (threadIdx.x == 0) {
            const int id = index == kNoIndex ? 0 : index;   // a row of NaNs: some id, probability NaN
            ids[row] = id;
            probs[row] = 1.0f / sum;
            if (next_tokens) next_tokens[row] = id;
        }
        return;
    }
    const int64_t slot = row * count + chunk;
    if (threadIdx.x == 0) {
        chunks.best[slot] = best;
        chunks.index[slot] = index;
        chunks.sum[slot] = sum;
        __threadfence();
        last = atomicAdd(chunks.finished + row, 1) == count - 1;
        if (last) chunks.finished[row] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    // The last chunk combines them: the best of the bests, and each chunk's
    // sum rescaled to it.
    best = -INFINITY;
    index = kNoIndex;
    for (int c = threadIdx.x; c < count; c += kThreads)
        take_better(best, index, __ldcg(chunks.best + row * count + c), __ldcg(chunks.index + row * count + c));
    block_argmax(best, index);
    sum = 0.0f;
    for (int c = threadIdx.x; c < count; c += kThreads)
        sum += __ldcg(chunks.sum + row * count + c) * __expf(__ldcg(chunks.best + row * count + c) - best);
    sum = block_sum(sum, shared_sum);
    if (threadIdx.x == 0) {
        const int id = index == kNoIndex ? 0 : index;
        ids[row] = id;
        probs[row] = 1.0f / sum;
        if (next_tokens) next_tokens[row] = id;
    }
}

} // namespace

void CudaBackend::do_argmax_rows(Tensor ids, Tensor probs, Tensor logits, Tensor next_tokens)
{
    const int64_t rows = logits.shape[0], vocab = logits.shape[1];
    CRUCIBLE_REQUIRE(vocab < int64_t(1) << 31, "argmax_rows on CUDA takes vocabularies of up to 2^31 - 1 entries");
    if (rows == 0) return;
    const int64_t count = (vocab + kChunk - 1) / kChunk;
    CRUCIBLE_REQUIRE(rows < 65536, "argmax_rows on CUDA takes up to 65535 rows at once");
    ChunkResults chunks{};
    if (count > 1) {
        const size_t slots = size_t(rows * count);
        auto* base = static_cast<char*>(scratch(slots * (2 * sizeof(float) + sizeof(int))));
        chunks.best = reinterpret_cast<float*>(base);
        chunks.sum = chunks.best + slots;
        chunks.index = reinterpret_cast<int*>(chunks.sum + slots);
        chunks.finished = zeroed_counters(size_t(rows));
    }
    dispatch_act(logits.dtype, "argmax_rows", [&](auto tag) {
        using T = decltype(tag);
        // 16-byte loads need every row to start on a 16-byte boundary.
        const bool vectorised = aligned16(logits.data) && (vocab * int64_t(sizeof(T))) % 16 == 0;
        launch_overlapped(argmax_rows_kernel<T>, LaunchShape{dim3(unsigned(count), unsigned(rows)), dim3(kThreads)},
                          m_stream, ids.as<int32_t>(), probs.as<float>(), next_tokens.as<int32_t>(), logits.as<T>(), vocab,
                          vectorised, chunks);
    });
}

} // namespace crucible
