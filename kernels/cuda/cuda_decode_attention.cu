// Attention of new tokens over the KV cache on CUDA: split-K ("flash
// decoding"), so that a batch of one sequence still fills the GPU.
//
// Grid: (token row × KV head, split). A block takes the g = H / KV query
// heads that share one KV head (GQA: the keys and values are read once for
// the group) and the split's range of cache positions, clipped to its row's
// position (causal). It walks the range in tiles of kTile keys: every thread
// scores keys against the group's queries (held in shared memory, scaled),
// one warp per head updates the running max and sum and turns the tile's
// scores into probabilities, then every thread accumulates its share of the
// g × D outputs (consecutive threads, consecutive dims: coalesced value
// reads). With one split the block normalises and writes the output; with
// several it writes its unnormalised accumulator, max and sum, and a second
// kernel merges the splits (rescaling each by exp(m_s − max)).
//
// The launch depends only on shapes and the cache capacity, never on the
// positions (they stay on the device), so a captured decode step replays as
// the cache grows. Splits beyond a row's position exit at once.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_generation.h"

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

size_t shared_bytes(const DecodeGeometry& g)
{
    // q [g, D], scores [g, kTile], running max, sum and correction [g] each.
    return sizeof(float) * size_t(g.group) * (size_t(g.head_dim) + kTile + 3);
}

// Partial results of the splits: acc [rows, H, splits, D], max and sum [rows, H, splits].
struct Partials {
    float* acc;
    float* max;
    float* sum;
};

Partials partials_at(void* workspace, const DecodeGeometry& g)
{
    float* base = static_cast<float*>(workspace);
    const int64_t slots = g.rows * g.heads * g.splits;
    return Partials{base, base + slots * g.head_dim, base + slots * (g.head_dim + 1)};
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
    extern __shared__ float smem[];
    const int G = g.group, D = g.head_dim;
    float* q_s = smem;                      // [G, D]
    float* p_s = q_s + G * D;               // [G, kTile] scores, then probabilities
    float* max_s = p_s + G * kTile;         // [G]
    float* sum_s = max_s + G;               // [G]
    float* corr_s = sum_s + G;              // [G]

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
        } else if (tid < G) {
            const int64_t slot = (row * g.heads + first_head + tid) * g.splits + split;
            partials.max[slot] = -INFINITY;
            partials.sum[slot] = 0.0f;
        }
        return;
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
        // Scores: thread (j, head-slice) computes key j against heads h ≡ tid / kTile (mod kThreads / kTile).
        for (int item = tid; item < G * kTile; item += kThreads) {
            const int j = item % kTile, h = item / kTile;
            float s = -INFINITY;
            if (j < count) {
                const T* k = keys + (t0 + j) * D;
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
            for (int j = 0; j < count; ++j) a += ps[j] * to_f(values[(t0 + j) * D + d]);
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
}

// One block per (row, query head): merges the splits' partial results.
template <class T>
__global__ void merge_splits_kernel(T* __restrict__ out, Partials partials, const int32_t* __restrict__ positions,
                                    DecodeGeometry g)
{
    const int64_t row = blockIdx.x / g.heads;
    const int h = int(blockIdx.x % g.heads);
    const int D = g.head_dim;
    T* o = out + (row * g.heads + h) * D;
    if (positions[row] < 0) {
        for (int d = threadIdx.x; d < D; d += blockDim.x) o[d] = from_f<T>(0.0f);
        return;
    }
    const int64_t first = (row * g.heads + h) * g.splits;
    float top = -INFINITY;
    for (int s = 0; s < g.splits; ++s) top = fmaxf(top, partials.max[first + s]);
    float total = 0.0f;
    for (int s = 0; s < g.splits; ++s) {
        const float m = partials.max[first + s];
        if (m != -INFINITY) total += partials.sum[first + s] * __expf(m - top);
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < g.splits; ++s) {
            const float m = partials.max[first + s];
            if (m != -INFINITY) a += partials.acc[(first + s) * D + d] * __expf(m - top);
        }
        o[d] = from_f<T>(a / total);
    }
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

size_t decode_attention_workspace_bytes(const AttentionShape& s, int64_t capacity, int sm_count)
{
    const DecodeGeometry g = geometry(s, capacity, sm_count);
    if (g.splits == 1) return 0;
    return sizeof(float) * size_t(g.rows * g.heads * g.splits) * size_t(g.head_dim + 2);
}

void launch_decode_attention(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                             const AttentionShape& s, void* workspace, int sm_count, cudaStream_t stream)
{
    check_decode(out, qkv, k_cache, v_cache, positions, s);
    if (s.tokens() == 0) return;
    const DecodeGeometry g = geometry(s, k_cache.shape[2], sm_count);
    CRUCIBLE_CHECK(g.splits == 1 || workspace, "attention_decode: the split-K workspace is missing");
    const Partials partials = g.splits == 1 ? Partials{} : partials_at(workspace, g);
    const size_t shared = shared_bytes(g);
    dispatch_act(qkv.dtype, "attention_decode", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = g.head_dim % 8 == 0 && aligned16(k_cache.data);
        auto launch = [&](auto kernel) {
            if (shared > 48 * 1024)
                CRUCIBLE_CUDA_CHECK(
                    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared)));
            const dim3 grid(unsigned(g.rows * g.kv_heads), unsigned(g.splits));
            kernel<<<grid, kThreads, shared, stream>>>(out.as<T>(), partials, qkv.as<T>(), k_cache.as<T>(),
                                                       v_cache.as<T>(), positions.as<int32_t>(), g);
        };
        if (vec) launch(decode_attention_kernel<T, true>);
        else launch(decode_attention_kernel<T, false>);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        if (g.splits > 1) {
            merge_splits_kernel<T><<<unsigned(g.rows * g.heads), 64, 0, stream>>>(out.as<T>(), partials,
                                                                                  positions.as<int32_t>(), g);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        }
    });
}

} // namespace crucible::cuda
