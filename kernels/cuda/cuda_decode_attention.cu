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
// accumulates its share of the g × D outputs. With one split the block
// normalises and writes the output. The splits of one (row, KV head) form a
// thread-block cluster (Hopper and later): each leaves its unnormalised
// accumulator, max and sum in its shared memory, and the cluster's first
// block merges them through distributed shared memory, rescaling each by
// exp(m_s − max): no round trip through global memory, no second launch.
// Older GPUs read the whole range in one split.
//
// Launched overlapped (overlap.cuh): before waiting for the projection that
// writes this step's queries, keys and values, a block already fetches the
// cached keys and values of earlier steps. The launch depends only on shapes
// and the cache capacity, never on the positions (they stay on the device),
// so a captured decode step replays as the cache grows. Splits beyond a
// row's position exit at once.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_generation.h"
#include "kernels/cuda/overlap.cuh"

#include <cooperative_groups.h>

namespace crucible::cuda {

namespace {

// Threads per block: 256, or 128 where the group's g·D outputs fit in 128
// (small heads, where the smaller block measured faster).
constexpr int kThreads = 256;
constexpr int kSmallThreads = 128;
constexpr int kTile = 128;         // keys per tile
constexpr int kMaxOutputs = 8;     // g·D ≤ kThreads · kMaxOutputs outputs per block
constexpr int kMaxSplits = 8;      // the portable cluster size

struct DecodeGeometry {
    int64_t rows, seq, capacity;
    int heads, kv_heads, group, head_dim;
    int64_t ld;          // row stride of packed qkv
    int splits;
    int64_t split_len;   // positions per split, a multiple of kTile
    float scale;
};

// clusters: whether the device runs thread-block clusters (else one split).
DecodeGeometry geometry(const AttentionShape& s, int64_t capacity, int sm_count, bool clusters)
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
    const int64_t max_splits = clusters ? std::min<int64_t>((capacity + kTile - 1) / kTile, kMaxSplits) : 1;
    const int64_t wanted = (2 * int64_t(std::max(sm_count, 1)) + blocks - 1) / blocks;
    g.splits = int(std::clamp<int64_t>(wanted, 1, max_splits));
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
    // q [g, D] (at the end the split's accumulator), scores [g, kTile] (at
    // the end the merge's weights [g, splits]), running max, sum and
    // correction [g] each, then the key and value tiles [kTile, stride] each.
    const size_t stats = sizeof(float) * size_t(g.group) * (size_t(g.head_dim) + kTile + 3);
    const size_t tiles = 2 * element_bytes * kTile * size_t(tile_stride(g.head_dim, int(element_bytes)));
    return (stats + 15) / 16 * 16 + tiles;
}

// Copies rows [0, count) of D elements (contiguous in the cache) into a
// shared tile of rows `stride` apart; VEC: 16 bytes at a time, asynchronously
// (the caller waits), else element by element.
template <class T, bool VEC, int THREADS>
__device__ __forceinline__ void stage_tile(T* tile, const T* rows, int count, int D, int stride)
{
    if constexpr (VEC) {
        constexpr int kPer = 16 / int(sizeof(T));
        const int chunks = D / kPer;
        for (int c = threadIdx.x; c < count * chunks; c += THREADS) {
            const int j = c / chunks, e = (c % chunks) * kPer;
            attn::cp_async16(tile + j * stride + e, rows + int64_t(j) * D + e, true);
        }
    } else {
        for (int c = threadIdx.x; c < count * D; c += THREADS) tile[(c / D) * stride + c % D] = rows[c];
    }
}

// The splits of one (row, KV head) are one cluster, split s its block of
// rank s. Each has left its unnormalised accumulator [g, D], max and sum [g]
// in its shared memory; the first block combines them into out. Every block
// of the cluster must call this (it holds the cluster's barriers).
template <class T>
__device__ void merge_splits(T* __restrict__ out, bool padding, const DecodeGeometry& g, int64_t row,
                             int first_head, const float* acc_s, const float* max_s, const float* sum_s,
                             float* weights_s)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    const cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();   // every split's results are in its shared memory
    if (cluster.block_rank() == 0) {
        const int G = g.group, D = g.head_dim, S = g.splits;
        const int lane = int(threadIdx.x % 32);
        // weights_s[h·S + s] = exp(m_s − max) / total for head h; lane s reads split s.
        for (int h = int(threadIdx.x / 32); h < G; h += int(blockDim.x / 32)) {
            const float m = lane < S ? *cluster.map_shared_rank(max_s + h, lane) : -INFINITY;
            const float sum = lane < S ? *cluster.map_shared_rank(sum_s + h, lane) : 0.0f;
            const float top = warp_max(m);
            const float w = m == -INFINITY ? 0.0f : __expf(m - top);
            const float total = warp_sum(sum * w);
            if (lane < S) weights_s[h * S + lane] = total > 0.0f ? w / total : 0.0f;
        }
        __syncthreads();
        for (int o = int(threadIdx.x); o < G * D; o += int(blockDim.x)) {
            const int h = o / D;
            float a = 0.0f;
            for (int s = 0; s < S; ++s) {   // a split that saw no key (weight 0) left no accumulator
                const float w = weights_s[h * S + s];
                if (w != 0.0f) a += w * *cluster.map_shared_rank(acc_s + o, s);
            }
            out[row * int64_t(g.heads) * D + int64_t(first_head) * D + o] = from_f<T>(padding ? 0.0f : a);
        }
    }
    cluster.sync();   // the others' shared memory stays until the first block has read it
#else
    (void)out, (void)padding, (void)g, (void)row, (void)first_head, (void)acc_s, (void)max_s, (void)sum_s,
        (void)weights_s;
    __trap();   // never launched with splits on these GPUs
#endif
}

// VEC: head_dim a multiple of 8 and 16-byte aligned keys: each key is read
// 8 elements (16 bytes) at a time, so a score costs D/8 independent loads
// instead of D dependent ones.
template <class T, bool VEC, int THREADS>
__global__ void __launch_bounds__(THREADS)
    decode_attention_kernel(T* __restrict__ out, const T* __restrict__ qkv,
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

    const int64_t row = blockIdx.x / g.kv_heads;
    const int kv = int(blockIdx.x % g.kv_heads);
    const int split = int(blockIdx.y);
    const int first_head = kv * G;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int p = positions[row];   // uploaded before the step's first kernel
    const int64_t begin = int64_t(split) * g.split_len;
    const int64_t end = p < 0 ? begin : std::min<int64_t>(begin + g.split_len, int64_t(p) + 1);
    const int64_t b = row / g.seq;
    const T* keys = k_cache + (b * g.kv_heads + kv) * g.capacity * D;
    const T* values = v_cache + (b * g.kv_heads + kv) * g.capacity * D;

    // Keys and values before the chunk's first new position were written by
    // earlier steps: the first tile's share of them is fetched while the
    // kernel before (which writes this step's queries, keys and values) ends.
    int early = 0;
    if (end > begin) {
        const int64_t fresh = positions[b * g.seq];
        early = int(std::clamp<int64_t>(fresh - begin, 0, std::min<int64_t>(kTile, end - begin)));
        stage_tile<T, VEC, THREADS>(k_s, keys + begin * D, early, D, stride);
        stage_tile<T, VEC, THREADS>(v_s, values + begin * D, early, D, stride);
    }
    wait_for_previous_kernel();
    allow_next_kernel();

    if (end <= begin) {   // padding row, or a split past the row's position
        if (g.splits == 1) {
            for (int o = tid; o < G * D; o += THREADS)
                out[row * int64_t(g.heads) * D + int64_t(first_head) * D + o] = from_f<T>(0.0f);
            return;
        }
        if (tid < G) {
            max_s[tid] = -INFINITY;
            sum_s[tid] = 0.0f;
        }
        return merge_splits(out, p < 0, g, row, first_head, q_s, max_s, sum_s, p_s);
    }

    for (int o = tid; o < G * D; o += THREADS)
        q_s[o] = to_f(qkv[row * g.ld + int64_t(first_head) * D + o]) * g.scale;
    if (tid < G) {
        max_s[tid] = -INFINITY;
        sum_s[tid] = 0.0f;
    }
    float acc[kMaxOutputs];
#pragma unroll
    for (int i = 0; i < kMaxOutputs; ++i) acc[i] = 0.0f;
    __syncthreads();

    for (int64_t t0 = begin; t0 < end; t0 += kTile) {
        const int count = int(std::min<int64_t>(kTile, end - t0));
        const int staged = t0 == begin ? early : 0;
        stage_tile<T, VEC, THREADS>(k_s + staged * stride, keys + (t0 + staged) * D, count - staged, D, stride);
        stage_tile<T, VEC, THREADS>(v_s + staged * stride, values + (t0 + staged) * D, count - staged, D, stride);
        attn::cp_async_commit();
        attn::cp_async_wait<0>();
        __syncthreads();
        // Scores: thread (j, head-slice) computes key j against heads h ≡ tid / kTile (mod THREADS / kTile).
        for (int item = tid; item < G * kTile; item += THREADS) {
            const int j = item % kTile, h = item / kTile;
            float s = -INFINITY;
            if (j < count) {
                const T* k = k_s + j * stride;
                const float* q = q_s + h * D;
                s = 0.0f;
                if constexpr (VEC) {
                    // Two partial sums halve the chain of dependent adds.
                    float s2 = 0.0f;
#pragma unroll 4
                    for (int d = 0; d < D; d += 8) {
                        float kv8[8];
                        load8(kv8, k + d);
#pragma unroll
                        for (int i = 0; i < 8; i += 2) {
                            s += q[d + i] * kv8[i];
                            s2 += q[d + i + 1] * kv8[i + 1];
                        }
                    }
                    s += s2;
                } else {
                    for (int d = 0; d < D; ++d) s += q[d] * to_f(k[d]);
                }
            }
            p_s[h * kTile + j] = s;
        }
        __syncthreads();
        // Online softmax, one warp per head.
        for (int h = warp; h < G; h += THREADS / 32) {
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
        // Accumulate: output o = tid + i·THREADS is (head o / D, dim o % D).
#pragma unroll
        for (int i = 0; i < kMaxOutputs; ++i) {
            const int o = tid + i * THREADS;
            if (o >= G * D) break;
            const int h = o / D, d = o % D;
            const float* ps = p_s + h * kTile;
            // Four partial sums: the tile's keys are four short chains of
            // dependent adds instead of one long one.
            float a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            int j = 0;
            for (; j + 4 <= count; j += 4) {
#pragma unroll
                for (int u = 0; u < 4; ++u) a[u] += ps[j + u] * to_f(v_s[(j + u) * stride + d]);
            }
            for (; j < count; ++j) a[0] += ps[j] * to_f(v_s[j * stride + d]);
            acc[i] = acc[i] * corr_s[h] + ((a[0] + a[1]) + (a[2] + a[3]));
        }
        __syncthreads();
    }

    // One split: normalise and write. Several: the accumulator replaces q
    // (the last tile is done with it) and the cluster merges.
#pragma unroll
    for (int i = 0; i < kMaxOutputs; ++i) {
        const int o = tid + i * THREADS;
        if (o >= G * D) break;
        if (g.splits == 1) out[row * int64_t(g.heads) * D + int64_t(first_head) * D + o] = from_f<T>(acc[i] / sum_s[o / D]);
        else q_s[o] = acc[i];
    }
    if (g.splits > 1) merge_splits(out, false, g, row, first_head, q_s, max_s, sum_s, p_s);
}

// This kernel's limit: one block holds a KV head's whole group of queries.
void check_group(const AttentionShape& s)
{
    CRUCIBLE_REQUIRE(s.group() * s.head_dim <= kThreads * kMaxOutputs,
                     "attention_decode on CUDA handles up to " + std::to_string(kThreads * kMaxOutputs) +
                         " query values per KV head (n_heads / n_kv_heads × head_dim); this model has " +
                         std::to_string(s.group() * s.head_dim));
}

} // namespace

void launch_decode_attention(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                             const AttentionShape& s, int sm_count, bool clusters, cudaStream_t stream)
{
    check_group(s);
    if (s.tokens() == 0) return;
    const DecodeGeometry g = geometry(s, k_cache.shape[2], sm_count, clusters);
    LaunchShape shape;
    shape.grid = dim3(unsigned(g.rows * g.kv_heads), unsigned(g.splits));
    const bool small = g.group * g.head_dim <= kSmallThreads;
    shape.block = dim3(small ? kSmallThreads : kThreads);
    shape.shared_bytes = shared_bytes(g, dtype_bytes(qkv.dtype, 1));
    shape.cluster = dim3(1, unsigned(g.splits));
    dispatch_act(qkv.dtype, "attention_decode", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = g.head_dim % 8 == 0 && aligned16(k_cache.data) && aligned16(v_cache.data);
        auto launch = [&](auto kernel) {
            if (shape.shared_bytes > 48 * 1024)
                CRUCIBLE_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                         int(shape.shared_bytes)));
            launch_overlapped(kernel, shape, stream, out.as<T>(), qkv.as<T>(), k_cache.as<T>(), v_cache.as<T>(),
                              positions.as<int32_t>(), g);
        };
        if (vec && small) launch(decode_attention_kernel<T, true, kSmallThreads>);
        else if (vec) launch(decode_attention_kernel<T, true, kThreads>);
        else if (small) launch(decode_attention_kernel<T, false, kSmallThreads>);
        else launch(decode_attention_kernel<T, false, kThreads>);
    });
}

} // namespace crucible::cuda
