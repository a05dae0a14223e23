// Token embedding: lookup forward, deterministic scatter-add backward.
//
// The backward must add every dout row into the table row of its token.
// Atomics would make the f32 sums depend on scheduling, so instead the token
// ids are radix-sorted together with their positions (a stable sort: equal ids
// keep ascending positions), and the first warp of each run of equal ids owns
// that table row: it adds the run's dout rows in position order, the same
// order as the CPU reference, and writes the row once. Column slices of 256
// go to separate warps so wide rows spread over the machine.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

#include <cub/device/device_radix_sort.cuh>

namespace crucible {

using namespace cuda;

namespace {

constexpr int kSlice = 256;   // columns per warp in the backward

template <class T>
__global__ void embedding_forward_kernel(T* __restrict__ out, const int32_t* __restrict__ tokens,
                                         const T* __restrict__ table, int64_t n, int64_t C, bool vec)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
    if (i >= n * C) return;
    if (vec) {   // C % 8 == 0: the 8 elements sit in one row
        const T* src = table + int64_t(tokens[i / C]) * C + i % C;
        store_pack(out + i, load_pack(src));
        if constexpr (sizeof(T) == 4) store_pack(out + i + 4, load_pack(src + 4));
    } else {
        for (int64_t j = i; j < i + 8 && j < n * C; ++j) out[j] = table[int64_t(tokens[j / C]) * C + j % C];
    }
}

__global__ void iota_kernel(int32_t* __restrict__ out, int64_t n)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) out[i] = int32_t(i);
}

// One warp per (sorted position, column slice); only the first position of a
// run of equal ids works.
template <class T, bool VEC>
__global__ void embedding_backward_kernel(float* __restrict__ dtable, const uint32_t* __restrict__ ids,
                                          const int32_t* __restrict__ positions, const T* __restrict__ dout,
                                          int64_t n, int64_t C)
{
    const int lane = threadIdx.x % 32;
    const int64_t i = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (i >= n) return;
    const uint32_t id = ids[i];
    if (i > 0 && ids[i - 1] == id) return;
    int64_t end = i + 1;
    while (end < n && ids[end] == id) ++end;

    const int64_t c0 = int64_t(blockIdx.y) * kSlice;
    float* row = dtable + int64_t(id) * C;
    float acc[8];
    if constexpr (VEC) {
        const int64_t c = c0 + lane * 8;
        if (c >= C) return;
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[k] = row[c + k];
        int64_t j = i;
        for (; j + 4 <= end; j += 4) {   // four rows in flight
            float v[4][8];
#pragma unroll
            for (int u = 0; u < 4; ++u) load8(v[u], dout + int64_t(positions[j + u]) * C + c);
#pragma unroll
            for (int u = 0; u < 4; ++u)
#pragma unroll
                for (int k = 0; k < 8; ++k) acc[k] += v[u][k];
        }
        for (; j < end; ++j) {
            float v[8];
            load8(v, dout + int64_t(positions[j]) * C + c);
#pragma unroll
            for (int k = 0; k < 8; ++k) acc[k] += v[k];
        }
#pragma unroll
        for (int k = 0; k < 8; ++k) row[c + k] = acc[k];
    } else {
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const int64_t c = c0 + lane + 32 * k;
            acc[k] = c < C ? row[c] : 0.0f;
        }
        for (int64_t j = i; j < end; ++j) {
            const T* src = dout + int64_t(positions[j]) * C;
#pragma unroll
            for (int k = 0; k < 8; ++k) {
                const int64_t c = c0 + lane + 32 * k;
                if (c < C) acc[k] += to_f(src[c]);
            }
        }
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const int64_t c = c0 + lane + 32 * k;
            if (c < C) row[c] = acc[k];
        }
    }
}

} // namespace

void CudaBackend::do_embedding_forward(Tensor out, Tensor tokens, Tensor table)
{
    const int64_t n = tokens.numel(), C = table.cols();
    if (n == 0) return;
    dispatch_act(table.dtype, "embedding_forward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = C % 8 == 0 && aligned16(out.data) && aligned16(table.data);
        embedding_forward_kernel<T><<<blocks_for(n * C, 256 * 8), 256, 0, m_stream>>>(
            out.as<T>(), tokens.as<int32_t>(), table.as<T>(), n, C, vec);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_embedding_backward(Tensor dtable, Tensor tokens, Tensor dout)
{
    const int64_t n = tokens.numel(), V = dtable.rows(), C = dtable.cols();
    CRUCIBLE_REQUIRE(n < (int64_t(1) << 31), "embedding_backward on CUDA takes up to 2^31 - 1 tokens in one call");
    if (n == 0) return;
    int bits = 1;
    while ((int64_t(1) << bits) < V) ++bits;

    // Scratch: sorted ids, positions in and out, and CUB's temporary storage.
    size_t cub_bytes = 0;
    CRUCIBLE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, cub_bytes, static_cast<const uint32_t*>(nullptr),
                                                        static_cast<uint32_t*>(nullptr),
                                                        static_cast<const int32_t*>(nullptr),
                                                        static_cast<int32_t*>(nullptr), n, 0, bits, m_stream));
    ScratchPlan plan;
    const size_t o_ids = plan.add(sizeof(uint32_t) * size_t(n));
    const size_t o_pin = plan.add(sizeof(int32_t) * size_t(n));
    const size_t o_pout = plan.add(sizeof(int32_t) * size_t(n));
    const size_t o_cub = plan.add(cub_bytes);
    char* base = static_cast<char*>(scratch(plan.total()));
    auto* ids = reinterpret_cast<uint32_t*>(base + o_ids);
    auto* pos_in = reinterpret_cast<int32_t*>(base + o_pin);
    auto* pos_out = reinterpret_cast<int32_t*>(base + o_pout);

    iota_kernel<<<blocks_for(n, 256), 256, 0, m_stream>>>(pos_in, n);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    // Token ids are non-negative, so their bits sort as unsigned.
    CRUCIBLE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + o_cub, cub_bytes,
                                                        reinterpret_cast<const uint32_t*>(tokens.data), ids, pos_in,
                                                        pos_out, n, 0, bits, m_stream));
    dispatch_act(dout.dtype, "embedding_backward", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = C % 8 == 0 && aligned16(dout.data) && aligned16(dtable.data);
        const dim3 grid(blocks_for(n, 4), blocks_for(C, kSlice));
        if (vec)
            embedding_backward_kernel<T, true><<<grid, 128, 0, m_stream>>>(dtable.as<float>(), ids, pos_out,
                                                                           dout.as<T>(), n, C);
        else
            embedding_backward_kernel<T, false><<<grid, 128, 0, m_stream>>>(dtable.as<float>(), ids, pos_out,
                                                                            dout.as<T>(), n, C);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace crucible
