// Attention of new tokens over the KV cache on CUDA: split-K ("flash
// decoding"), so that a batch of one sequence still fills the GPU.
//
// Grid: (token row × KV head, split). A block takes the g = H / KV query
// heads that share one KV head (GQA: the keys and values are read once for
// the group) and the split's range of cache positions, clipped to its row's
// position (causal). It walks the range in tiles of kTile keys. A tile's keys
// and values are copied to shared memory first, all of them in flight at
// once (cp.async), so the tile costs one trip to memory rather than one per
// dependent load. Then every thread scores keys against the group's queries
// (held in shared memory, scaled), one warp per head updates the running max
// and sum and turns the tile's scores into probabilities, and every thread
// accumulates its share of the g × D outputs. With one split the block normalises and writes the output; with
// several it writes its unnormalised accumulator, max and sum, and the last
// split of its (row, KV head) to finish (a counter per pair, reset by that
// block for the next launch) merges them, rescaling each by exp(m_s − max):
// one launch per layer instead of two.
//
// Launched overlapped (overlap.cuh): its start-up hides behind the
// projection before it. The launch depends only on shapes and the cache
// capacity, never on the positions (they stay on the device), so a captured
// decode step replays as the cache grows. Splits beyond a row's position
// exit at once.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_generation.h"
#include "kernels/cuda/overlap.cuh"

namespace crucible::cuda {

namespace {

constexpr int kThreads = 128;
constexpr int kTile = 64;          // keys per tile
constexpr int kMaxOutputs = 16;    // g·D ≤ kThreads · kMaxOutputs outputs per block

struct DecodeGeometry {
    int64_t rows, seq, capacity;
    int heads, kv_heads, group, head_dim;
    int64_t ld;          // row stride of packed qkv
    int splits;
    int64_t split_len;   // positions per split, a multiple of kTile
    float scale;
};

DecodeGeometry geometry(const AttentionShape& s, int64_t capacity, int sm_count)
{
    DecodeGeometry g{};
    g.rows = s.tokens();
    g.seq = s.seq;
    g.capacity = capacity;
    g.heads = int(s.n_heads);
    g.kv_heads = int(s.n_kv_heads);
    g.group = int(s.group());
    g.head_dim = int(s.head_dim);
    g.ld = s.qkv_dim();
    g.scale = float(1.0 / std::sqrt(double(s.head_dim)));
    // Enough blocks for two waves of the SMs, but never a split shorter than a tile.
    const int64_t blocks = g.rows * g.kv_heads;
    const int64_t max_splits = (capacity + kTile - 1) / kTile;
    const int64_t wanted = (2 * int64_t(std::max(sm_count, 1)) + blocks - 1) / blocks;
    g.splits = int(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(max_splits, 64)));
    const int64_t per_split = (capacity + g.splits - 1) / g.splits;
    g.split_len = (per_split + kTile - 1) / kTile * kTile;
    g.splits = int((capacity + g.split_len - 1) / g.split_len);
    return g;
}

// Row stride of the key and value tiles in shared memory: 16 bytes of padding
// puts the rows that neighbouring lanes read in different banks.
__host__ __device__ constexpr int tile_stride(int head_dim, int element_bytes)
{
    return head_dim + 16 / element_bytes;
}

size_t shared_bytes(const DecodeGeometry& g, size_t element_bytes)
{
    // q [g, D], scores [g, kTile], running max, sum and correction [g] each
    // (afterwards the merge's weights [g, splits]: splits ≤ 64 ≤ D + kTile + 3),
    // then the key and value tiles [kTile, stride] each.
    const size_t stats = sizeof(float) * size_t(g.group) * (size_t(g.head_dim) + kTile + 3);
    const size_t tiles = 2 * element_bytes * kTile * size_t(tile_stride(g.head_dim, int(element_bytes)));
    return (stats + 15) / 16 * 16 + tiles;
}

// Copies rows [0, count) of D elements (contiguous in the cache) into a
// shared tile of rows `stride` apart; VEC: 16 bytes at a time, asynchronously
// (the caller waits), else element by element.
template <class T, bool VEC>
__device__ __forceinline__ void stage_tile(T* tile, const T* rows, int count, int D, int stride)
{
    if constexpr (VEC) {
        constexpr int kPer = 16 / int(sizeof(T));
        const int chunks = D / kPer;
        for (int c = threadIdx.x; c < count * chunks; c += kThreads) {
            const int j = c / chunks, e = (c % chunks) * kPer;
            attn::cp_async16(tile + j * stride + e, rows + int64_t(j) * D + e, true);
        }
    } else {
        for (int c = threadIdx.x; c < count * D; c += kThreads) tile[(c / D) * stride + c % D] = rows[c];
    }
}

// Partial results of the splits: acc [rows, H, splits, D], max and sum [rows, H, splits];
// finished: splits done per (row, KV head), zero between launches.
struct Partials {
    float* acc;
    float* max;
    float* sum;
    int* finished;
};

Partials partials_at(void* workspace, const DecodeGeometry& g)
{
    float* base = static_cast<float*>(workspace);
    const int64_t slots = g.rows * g.heads * g.splits;
    return Partials{base, base + slots * g.head_dim, base + slots * (g.head_dim + 1), nullptr};
}

// The last split of (row, KV head) to arrive merges the group's partials into
// out; the others return. Every split of the pair must call it.
template <class T>
__device__ void merge_if_last(T* __restrict__ out, const Partials& partials, int position, const DecodeGeometry& g,
                              int64_t row, int first_head, float* weights_s)
{
    __shared__ bool last;
    __threadfence();   // this block's partials are visible before it is counted
    __syncthreads();
    if (threadIdx.x == 0) {
        int* counter = partials.finished + blockIdx.x;
        last = atomicAdd(counter, 1) == g.splits - 1;
        if (last) *counter = 0;   // ready for the next launch (and graph replay)
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    const int G = g.group, D = g.head_dim, S = g.splits;
    // weights_s[h·S + s] = exp(m_s − max) / total for the group's head h; a
    // lane holds splits lane and lane + 32, loaded at once (S ≤ 64).
    const int lane = int(threadIdx.x % 32);
    for (int h = int(threadIdx.x / 32); h < G; h += int(blockDim.x / 32)) {
        const int64_t first = (row * g.heads + first_head + h) * S;
        float m[2], sum[2];
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            const int s = lane + 32 * k;
            m[k] = s < S ? __ldcg(partials.max + first + s) : -INFINITY;
            sum[k] = s < S ? __ldcg(partials.sum + first + s) : 0.0f;
        }
        const float top = warp_max(fmaxf(m[0], m[1]));
        float w[2], total = 0.0f;
#pragma unroll
        for (int k = 0; k < 2; ++k) {
            w[k] = m[k] == -INFINITY ? 0.0f : __expf(m[k] - top);
            total += sum[k] * w[k];
        }
        total = warp_sum(total);
        const float inv = total > 0.0f ? 1.0f / total : 0.0f;
#pragma unroll
        for (int k = 0; k < 2; ++k)
            if (lane + 32 * k < S) weights_s[h * S + lane + 32 * k] = w[k] * inv;
    }
    __syncthreads();
    for (int o = int(threadIdx.x); o < G * D; o += int(blockDim.x)) {
        const int h = o / D, d = o % D;
        const float* acc = partials.acc + (row * g.heads + first_head + h) * S * D + d;
        float a = 0.0f;
        // Unconditional loads, so they are all in flight at once; splits that
        // saw no key (weight 0) left their accumulator unwritten.
#pragma unroll 8
        for (int s = 0; s < S; ++s) {
            const float x = __ldcg(acc + int64_t(s) * D), ws = weights_s[h * S + s];
            a += ws != 0.0f ? x * ws : 0.0f;
        }
        if (position < 0) a = 0.0f;
        out[row * int64_t(g.heads) * D + int64_t(first_head + h) * D + d] = from_f<T>(a);
    }
}

// VEC: head_dim a multiple of 8 and 16-byte aligned keys: each key is read
// 8 elements (16 bytes) at a time, so a score costs D/8 independent loads
// instead of D dependent ones.
template <class T, bool VEC>
__global__ void __launch_bounds__(kThreads)
    decode_attention_kernel(T* __restrict__ out, Partials partials, const T* __restrict__ qkv,
                            const T* __restrict__ k_cache, const T* __restrict__ v_cache,
                            const int32_t* __restrict__ positions, DecodeGeometry g)
{
    extern __shared__ __align__(16) float smem[];
    const int G = g.group, D = g.head_dim;
    float* q_s = smem;                      // [G, D]
    float* p_s = q_s + G * D;               // [G, kTile] scores, then probabilities
    float* max_s = p_s + G * kTile;         // [G]
    float* sum_s = max_s + G;               // [G]
    float* corr_s = sum_s + G;              // [G]
    const int stride = tile_stride(D, int(sizeof(T)));
    T* k_s = reinterpret_cast<T*>(smem + (G * (D + kTile + 3) + 3) / 4 * 4);   // [kTile, stride], 16-byte aligned
    T* v_s = k_s + kTile * stride;                                              // [kTile, stride]

    wait_for_previous_kernel();   // it wrote this step's queries, keys and values
    allow_next_kernel();
    const int64_t row = blockIdx.x / g.kv_heads;
    const int kv = int(blockIdx.x % g.kv_heads);
    const int split = int(blockIdx.y);
    const int first_head = kv * G;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int p = positions[row];
    const int64_t begin = int64_t(split) * g.split_len;
    const int64_t end = p < 0 ? begin : std::min<int64_t>(begin + g.split_len, int64_t(p) + 1);

    if (end <= begin) {   // padding row, or a split past the row's position
        if (g.splits == 1) {
            for (int o = tid; o < G * D; o += kThreads)
                out[row * int64_t(g.heads) * D + int64_t(first_head) * D + o] = from_f<T>(0.0f);
            return;
        }
        if (tid < G) {
            const int64_t slot = (row * g.heads + first_head + tid) * g.splits + split;
            partials.max[slot] = -INFINITY;
            partials.sum[slot] = 0.0f;
        }
        return merge_if_last(out, partials, p, g, row, first_head, smem);
    }

    for (int o = tid; o < G * D; o += kThreads)
        q_s[o] = to_f(qkv[row * g.ld + int64_t(first_head) * D + o]) * g.scale;
    if (tid < G) {
        max_s[tid] = -INFINITY;
        sum_s[tid] = 0.0f;
    }
    float acc[kMaxOutputs];
#pragma unroll
    for (int i = 0; i < kMaxOutputs; ++i) acc[i] = 0.0f;
    const int64_t b = row / g.seq;
    const T* keys = k_cache + (b * g.kv_heads + kv) * g.capacity * D;
    const T* values = v_cache + (b * g.kv_heads + kv) * g.capacity * D;
    __syncthreads();

    for (int64_t t0 = begin; t0 < end; t0 += kTile) {
        const int count = int(std::min<int64_t>(kTile, end - t0));
        stage_tile<T, VEC>(k_s, keys + t0 * D, count, D, stride);
        stage_tile<T, VEC>(v_s, values + t0 * D, count, D, stride);
        attn::cp_async_commit();
        attn::cp_async_wait<0>();
        __syncthreads();
        // Scores: thread (j, head-slice) computes key j against heads h ≡ tid / kTile (mod kThreads / kTile).
        for (int item = tid; item < G * kTile; item += kThreads) {
            const int j = item % kTile, h = item / kTile;
            float s = -INFINITY;
            if (j < count) {
                const T* k = k_s + j * stride;
                const float* q = q_s + h * D;
                s = 0.0f;
                if constexpr (VEC) {
#pragma unroll 4
                    for (int d = 0; d < D; d += 8) {
                        float kv8[8];
                        load8(kv8, k + d);
#pragma unroll
                        for (int i = 0; i < 8; ++i) s += q[d + i] * kv8[i];
                    }
                } else {
                    for (int d = 0; d < D; ++d) s += q[d] * to_f(k[d]);
                }
            }
            p_s[h * kTile + j] = s;
        }
        __syncthreads();
        // Online softmax, one warp per head.
        for (int h = warp; h < G; h += kThreads / 32) {
            float* ps = p_s + h * kTile;
            float m = -INFINITY;
            for (int j = lane; j < kTile; j += 32) m = fmaxf(m, ps[j]);
            m = warp_max(m);
            const float old_max = max_s[h];
            const float new_max = fmaxf(old_max, m);
            float sum = 0.0f;
            for (int j = lane; j < kTile; j += 32) {
                const float e = j < count ? __expf(ps[j] - new_max) : 0.0f;
                ps[j] = e;
                sum += e;
            }
            sum = warp_sum(sum);
            if (lane == 0) {
                const float corr = __expf(old_max - new_max);   // 0 on the first tile (old_max = -inf)
                corr_s[h] = corr;
                sum_s[h] = sum_s[h] * corr + sum;
                max_s[h] = new_max;
            }
        }
        __syncthreads();
        // Accumulate: output o = tid + i·kThreads is (head o / D, dim o % D).
#pragma unroll
        for (int i = 0; i < kMaxOutputs; ++i) {
            const int o = tid + i * kThreads;
            if (o >= G * D) break;
            const int h = o / D, d = o % D;
            const float* ps = p_s + h * kTile;
            float a = acc[i] * corr_s[h];
#pragma unroll 8
            for (int j = 0; j < count; ++j) a += ps[j] * to_f(v_s[j * stride + d]);
            acc[i] = a;
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < kMaxOutputs; ++i) {
        const int o = tid + i * kThreads;
        if (o >= G * D) break;
        const int h = o / D, d = o % D;
        if (g.splits == 1) {
            out[row * int64_t(g.heads) * D + int64_t(first_head + h) * D + d] = from_f<T>(acc[i] / sum_s[h]);
        } else {
            const int64_t slot = (row * g.heads + first_head + h) * g.splits + split;
            partials.acc[slot * D + d] = acc[i];
            if (d == 0) {
                partials.max[slot] = max_s[h];
                partials.sum[slot] = sum_s[h];
            }
        }
    }
    if (g.splits > 1) merge_if_last(out, partials, p, g, row, first_head, smem);
}

void check_decode(const Tensor& out, const Tensor& qkv, const Tensor& k_cache, const Tensor& v_cache,
                  const Tensor& positions, const AttentionShape& s)
{
    CRUCIBLE_CHECK(s.n_kv_heads >= 1 && s.n_heads % s.n_kv_heads == 0,
                   "attention_decode: n_heads (" + std::to_string(s.n_heads) + ") must be a multiple of n_kv_heads (" +
                       std::to_string(s.n_kv_heads) + ")");
    CRUCIBLE_CHECK(qkv.numel() == s.tokens() * s.qkv_dim(), "attention_decode: qkv " + qkv.shape.str() +
                                                                " does not match the shape");
    CRUCIBLE_CHECK(out.numel() == s.tokens() * s.q_dim(), "attention_decode: out " + out.shape.str() +
                                                              " does not match the shape");
    CRUCIBLE_CHECK(k_cache.shape.rank == 4 && k_cache.shape == v_cache.shape && k_cache.shape[0] >= s.batch &&
                       k_cache.shape[1] == s.n_kv_heads && k_cache.shape[3] == s.head_dim,
                   "attention_decode: cache " + k_cache.shape.str() + " does not hold " + std::to_string(s.batch) +
                       " sequences of " + std::to_string(s.n_kv_heads) + " heads of size " +
                       std::to_string(s.head_dim));
    CRUCIBLE_CHECK(out.dtype == qkv.dtype && k_cache.dtype == qkv.dtype && v_cache.dtype == qkv.dtype,
                   "attention_decode: out, qkv and the cache must share a dtype");
    expect_dtype(positions, DType::i32, "attention_decode positions");
    CRUCIBLE_CHECK(positions.numel() == s.tokens(), "attention_decode: one position per token row");
    CRUCIBLE_CHECK(s.group() * s.head_dim <= kThreads * kMaxOutputs,
                   "attention_decode on CUDA handles up to " + std::to_string(kThreads * kMaxOutputs) +
                       " query values per KV head (n_heads / n_kv_heads × head_dim); this model has " +
                       std::to_string(s.group() * s.head_dim));
}

} // namespace

DecodeWorkspace decode_attention_workspace(const AttentionShape& s, int64_t capacity, int sm_count)
{
    const DecodeGeometry g = geometry(s, capacity, sm_count);
    if (g.splits == 1) return {};
    return {sizeof(float) * size_t(g.rows * g.heads * g.splits) * size_t(g.head_dim + 2),
            size_t(g.rows * g.kv_heads)};
}

void launch_decode_attention(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                             const AttentionShape& s, void* workspace, int* counters, int sm_count,
                             cudaStream_t stream)
{
    check_decode(out, qkv, k_cache, v_cache, positions, s);
    if (s.tokens() == 0) return;
    const DecodeGeometry g = geometry(s, k_cache.shape[2], sm_count);
    CRUCIBLE_CHECK(g.splits == 1 || (workspace && counters), "attention_decode: the split-K workspace is missing");
    Partials partials = g.splits == 1 ? Partials{} : partials_at(workspace, g);
    partials.finished = counters;
    const size_t shared = shared_bytes(g, dtype_bytes(qkv.dtype, 1));
    dispatch_act(qkv.dtype, "attention_decode", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = g.head_dim % 8 == 0 && aligned16(k_cache.data) && aligned16(v_cache.data);
        auto launch = [&](auto kernel) {
            if (shared > 48 * 1024)
                CRUCIBLE_CUDA_CHECK(
                    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
            const dim3 grid(unsigned(g.rows * g.kv_heads), unsigned(g.splits));
            launch_overlapped(kernel, grid, dim3(kThreads), shared, stream, out.as<T>(), partials, qkv.as<T>(),
                              k_cache.as<T>(), v_cache.as<T>(), positions.as<int32_t>(), g);
        };
        if (vec) launch(decode_attention_kernel<T, true>);
        else launch(decode_attention_kernel<T, false>);
    });
}

} // namespace crucible::cuda
