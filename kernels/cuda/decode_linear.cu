// The linear layers of a decode step on CUDA: a few rows (one new token of
// each of up to 8 sequences) times a weight matrix, with the small ops around
// the product fused into it.
//
// At this size the step is latency-bound: a GEMM library's tiles, built for
// large M, spend longer starting than streaming a 2 MB weight, and every
// separate op (the RMSNorm before, RoPE, the cache write or SwiGLU after) is
// another launch on the step's critical path. Here one block owns 16 output
// features and reads their weight rows once. Its warps split K; each lane
// keeps kUnroll k-blocks of 32 (two 16-byte weight loads per k-block) in
// flight and prefetches the next group while the tensor cores multiply:
// mma.m16n8k16 with the 16 features as A and the ≤ 8 rows as B, so eight
// sequences cost what one does. A lane loads 8 consecutive k of each weight
// row and the same 8 k of x: that permutes the fragment's k order (see
// mma.cuh), which a dot product does not see.
//
// Rows of a tile are features in pairs (f, f + P): rows 0–7 are base..base+7,
// rows 8–15 are base+P..base+P+7, so a lane's two C values of one sequence
// are features f and f + P. P = D/2 makes them a RoPE pair, P = F (gate and
// up stacked) a SwiGLU pair; P = 8 is a plain run of 16.
//
// Launched overlapped (overlap.cuh): what no kernel of the step writes (the
// first weights, the norm weights, positions, RoPE angles) is requested while
// the kernel before still runs; after the wait one trip to memory brings x.
//
// The first layer's projection may start from the step's tokens: its rows of
// x are then rows of the embedding table, and block 0 also writes them to x
// for the residual stream (the lookup's own launch saved).
//
// Numerics follow the separate ops: f32 sums; the product rounded to bf16
// before RoPE or SwiGLU read it (as they would read it from memory); the
// RMSNorm statistics summed per lane in the same order as rmsnorm_forward
// (every block recomputes them: K·M reads from L2 instead of a launch).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/overlap.cuh"

namespace crucible {

namespace {

using namespace cuda;

constexpr int kMaxRows = 8;     // the mma's n: sequences per launch
constexpr int kUnroll = 4;      // k-blocks of 32 a lane keeps in flight
constexpr int kMaxWarps = 16;

enum class Epilogue { store, accumulate, swiglu, rope_cache };

struct DecodeLinearParams {
    bf16* out;                   // [rows, ldo]
    int64_t ldo;
    const bf16* x;               // [rows, k]
    const bf16* w;               // [n, k]
    int64_t k;
    int rows;
    int pair;                    // P, a multiple of 8
    const bf16* norm_weight;     // [k]: RMSNorm x first when set
    float eps;
    // First layer: x's rows are table[tokens[row]], written to x_out.
    const int32_t* tokens;       // [rows]
    const bf16* table;           // [vocab, k]
    bf16* x_out;                 // [rows, k]
    // rope_cache: out is qkv [rows, (H + 2·KV)·D]; row n is token n % seq of
    // sequence n / seq (a decode step has seq 1, a verification chunk more).
    const int32_t* positions;    // [rows]; negative = padding
    const float2* rope;          // [capacity, D/2] (cos, sin)
    bf16* k_cache;               // [S, KV, capacity, D]
    bf16* v_cache;
    int heads, kv_heads, head_dim, seq;
    int64_t capacity;
};

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

__device__ __forceinline__ float2 unpack_bf16(uint32_t v)
{
    __nv_bfloat162 pair;
    memcpy(&pair, &v, sizeof(v));
    return __bfloat1622float2(pair);
}

__device__ __forceinline__ uint32_t normalised(uint32_t x, uint32_t w, float rstd)
{
    const float2 a = unpack_bf16(x), g = unpack_bf16(w);
    return pack_bf16(a.x * rstd * g.x, a.y * rstd * g.y);
}

// x[k, k + 8) of one row as the B operand: 4 registers of bf16 pairs,
// RMS-normalised (x·rstd·w, as rmsnorm_forward) with the 8 norm weights w
// when the kernel has a norm. `row` points at the lane's first k.
__device__ __forceinline__ uint4 x_operand(const bf16* row, int64_t k, bool norm, float rstd, uint4 w)
{
    const uint4 raw = *reinterpret_cast<const uint4*>(row + k);
    if (!norm) return raw;
    return make_uint4(normalised(raw.x, w.x, rstd), normalised(raw.y, w.y, rstd), normalised(raw.z, w.z, rstd),
                      normalised(raw.w, w.w, rstd));
}

// What the epilogue of one lane of warp 0 reads besides the sums, for its two
// sequences n = 2t + c: the position and its (cos, sin) for RoPE (known
// before the previous kernel ends), the residual for accumulate (after).
struct EpilogueInputs {
    int pos[2] = {-1, -1};
    float2 rope[2] = {};
    float old_lo[2] = {}, old_hi[2] = {};
};

template <Epilogue E>
__device__ __forceinline__ void read_early(const DecodeLinearParams& p, int t, int64_t f, EpilogueInputs& in)
{
    if constexpr (E == Epilogue::rope_cache) {
        const int half = p.head_dim / 2;
        const int head = int(f / p.head_dim), i = int(f % p.head_dim);
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const int n = 2 * t + c;
            if (n >= p.rows) continue;
            const int pos = p.positions[n];
            in.pos[c] = pos;
            if (pos >= 0 && pos < p.capacity && head < p.heads + p.kv_heads)
                in.rope[c] = p.rope[int64_t(pos) * half + i];
        }
    }
}

template <Epilogue E>
__device__ __forceinline__ void read_late(const DecodeLinearParams& p, int t, int64_t f, EpilogueInputs& in)
{
    if constexpr (E == Epilogue::accumulate) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
            const int n = 2 * t + c;
            if (n >= p.rows) continue;
            const bf16* out = p.out + int64_t(n) * p.ldo;
            in.old_lo[c] = to_f(out[f]);
            in.old_hi[c] = to_f(out[f + p.pair]);
        }
    }
}

// Output pair (f, f + P) of sequence n = 2t + c: lo and hi are the f32 sums.
template <Epilogue E>
__device__ __forceinline__ void finish(const DecodeLinearParams& p, int n, int c, int64_t f, float lo, float hi,
                                       const EpilogueInputs& in)
{
    bf16* out = p.out + int64_t(n) * p.ldo;
    if constexpr (E == Epilogue::store) {
        out[f] = from_f<bf16>(lo);
        out[f + p.pair] = from_f<bf16>(hi);
    } else if constexpr (E == Epilogue::accumulate) {
        out[f] = from_f<bf16>(in.old_lo[c] + lo);
        out[f + p.pair] = from_f<bf16>(in.old_hi[c] + hi);
    } else if constexpr (E == Epilogue::swiglu) {
        const float gate = round_bf16(lo), up = round_bf16(hi);
        out[f] = from_f<bf16>(gate * sigmoid(gate) * up);
    } else {
        // Query and key heads turn by their position (rope_forward_at); key
        // and value heads also go to the sequence's cache slot (kv_cache_write).
        const int half = p.head_dim / 2;
        const int head = int(f / p.head_dim), i = int(f % p.head_dim);
        const int pos = in.pos[c];
        const bool real = pos >= 0 && pos < p.capacity;
        float a = round_bf16(lo), b = round_bf16(hi);
        if (real && head < p.heads + p.kv_heads) {
            const float2 cs = in.rope[c];
            const float ra = a * cs.x - b * cs.y, rb = b * cs.x + a * cs.y;
            a = ra;
            b = rb;
        }
        out[f] = from_f<bf16>(a);
        out[f + half] = from_f<bf16>(b);
        if (real && head >= p.heads) {
            const bool key = head < p.heads + p.kv_heads;
            const int kv = key ? head - p.heads : head - p.heads - p.kv_heads;
            const int64_t sequence = n / p.seq;
            bf16* slot = (key ? p.k_cache : p.v_cache) + ((sequence * p.kv_heads + kv) * p.capacity + pos) * p.head_dim + i;
            slot[0] = from_f<bf16>(a);
            slot[half] = from_f<bf16>(b);
        }
    }
}

template <Epilogue E>
__global__ void __launch_bounds__(32 * kMaxWarps) decode_linear_kernel(const DecodeLinearParams p)
{
    __shared__ float partial[kMaxWarps][32][4];
    __shared__ float rstd[kMaxRows];
    const int warps = int(blockDim.x / 32), warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
    const int g = lane / 4, t = lane % 4;
    const int64_t runs = p.pair / 8;   // tiles per run of P features
    const int64_t base = int64_t(blockIdx.x) / runs * 2 * p.pair + int64_t(blockIdx.x) % runs * 8;
    const bf16* w_lo = p.w + (base + g) * p.k + t * 8;
    const bf16* w_hi = w_lo + int64_t(p.pair) * p.k;
    const bool real_row = g < p.rows;   // B columns past the last row stay zero
    const bool norm = p.norm_weight != nullptr;
    const bf16* norm_weight = norm ? p.norm_weight + t * 8 : nullptr;
    const int64_t kblocks = p.k / 32;
    const int64_t groups = (kblocks + int64_t(warps) * kUnroll - 1) / (int64_t(warps) * kUnroll);
    // k-block u of group j of this warp; neighbouring warps read neighbouring blocks.
    auto kblock = [&](int64_t j, int u) { return (j * kUnroll + u) * warps + warp; };

    uint4 next_lo[kUnroll], next_hi[kUnroll], next_w[kUnroll];
    auto fetch = [&](int64_t j) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t kb = kblock(j, u);
            if (kb < kblocks) {
                next_lo[u] = __ldg(reinterpret_cast<const uint4*>(w_lo + kb * 32));
                next_hi[u] = __ldg(reinterpret_cast<const uint4*>(w_hi + kb * 32));
                if (norm) next_w[u] = __ldg(reinterpret_cast<const uint4*>(norm_weight + kb * 32));
            }
        }
    };
    // Everything no kernel of the step writes is requested before waiting
    // for the previous one: the first weights, the norm weights, positions
    // and RoPE angles. After the wait, one round trip brings x (and the
    // residual the epilogue adds to).
    fetch(0);
    EpilogueInputs in;
    if (warp == 0) read_early<E>(p, t, base + g, in);
    wait_for_previous_kernel();
    allow_next_kernel();
    if (warp == 0) read_late<E>(p, t, base + g, in);

    // Row r of x: given, or looked up (the tokens come from the step's inputs
    // or the previous step's picks, so only now).
    auto x_source = [&](int r) { return p.tokens ? p.table + int64_t(p.tokens[r]) * p.k : p.x + int64_t(r) * p.k; };
    if (p.tokens && blockIdx.x == 0) {
        for (int r = 0; r < p.rows; ++r) {
            const bf16* from = x_source(r);
            for (int64_t c = int64_t(threadIdx.x) * 8; c < p.k; c += int64_t(blockDim.x) * 8)
                *reinterpret_cast<uint4*>(p.x_out + int64_t(r) * p.k + c) = *reinterpret_cast<const uint4*>(from + c);
        }
    }
    const bf16* x_row = x_source(real_row ? g : 0) + t * 8;

    if (norm) {
        for (int r = warp; r < p.rows; r += warps) {
            const bf16* row = x_source(r);
            float ss = 0.0f;
            for (int64_t c = int64_t(lane) * 8; c < p.k; c += 32 * 8) {
                float v[8];
                load8(v, row + c);
#pragma unroll
                for (int i = 0; i < 8; ++i) ss += v[i] * v[i];
            }
            ss = warp_sum(ss);
            if (lane == 0) rstd[r] = rsqrtf(ss / float(p.k) + p.eps);
        }
        __syncthreads();
    }
    const float row_rstd = norm && real_row ? rstd[g] : 1.0f;

    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t j = 0; j < groups; ++j) {
        uint4 lo[kUnroll], hi[kUnroll], w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            lo[u] = next_lo[u];
            hi[u] = next_hi[u];
            w[u] = next_w[u];
        }
        if (j + 1 < groups) fetch(j + 1);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int64_t kb = kblock(j, u);   // the same for every lane: mma.sync stays converged
            if (kb >= kblocks) break;
            const uint4 xv = real_row ? x_operand(x_row, kb * 32, norm, row_rstd, w[u]) : make_uint4(0, 0, 0, 0);
            const uint32_t a0[4] = {lo[u].x, hi[u].x, lo[u].y, hi[u].y};
            const uint32_t a1[4] = {lo[u].z, hi[u].z, lo[u].w, hi[u].w};
            mma_bf16(acc, a0, xv.x, xv.y);
            mma_bf16(acc, a1, xv.z, xv.w);
        }
    }

    // Sum the warps' partial tiles; warp 0 finishes.
    if (warp > 0) {
#pragma unroll
        for (int i = 0; i < 4; ++i) partial[warp][lane][i] = acc[i];
    }
    __syncthreads();
    if (warp > 0) return;
    for (int w = 1; w < warps; ++w) {
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[i] += partial[w][lane][i];
    }
    // C (g, 2t + c) is feature base + g of sequence 2t + c; (g + 8, ·) its pair.
#pragma unroll
    for (int c = 0; c < 2; ++c) {
        const int n = 2 * t + c;
        if (n < p.rows) finish<E>(p, n, c, base + g, acc[c], acc[2 + c], in);
    }
}

bool is_bf16(const Tensor& t) { return t.dtype == DType::bf16 && aligned16(t.data); }

// Whether the kernel takes x [M, K] · weight [N, K]ᵀ with pairs P apart.
bool fits(const Tensor& x, const Tensor& weight, int64_t pair)
{
    const int64_t m = x.rows(), k = x.cols(), n = weight.rows();
    return m >= 1 && m <= kMaxRows && k % 32 == 0 && weight.cols() == k && pair % 8 == 0 && n % (2 * pair) == 0 &&
           is_bf16(x) && is_bf16(weight);
}

template <Epilogue E>
void launch(const DecodeLinearParams& p, int64_t n, cudaStream_t stream)
{
    // Enough warps that one group of kUnroll k-blocks each covers K.
    const int64_t kblocks = p.k / 32;
    const int warps = int(std::clamp<int64_t>((kblocks + kUnroll - 1) / kUnroll, 1, kMaxWarps));
    launch_overlapped(decode_linear_kernel<E>, LaunchShape{dim3(unsigned(n / 16)), dim3(32 * warps)}, stream, p);
}

DecodeLinearParams params_for(Tensor out, Tensor x, Tensor weight, int64_t pair)
{
    DecodeLinearParams p{};
    p.out = out.as<bf16>();
    p.ldo = out.cols();
    p.x = x.as<bf16>();
    p.w = weight.as<bf16>();
    p.k = x.cols();
    p.rows = int(x.rows());
    p.pair = int(pair);
    return p;
}

void set_norm(DecodeLinearParams& p, Tensor norm_weight, float eps)
{
    p.norm_weight = norm_weight.as<bf16>();
    p.eps = eps;
}

} // namespace

bool CudaBackend::linear_forward_few_rows(Tensor out, Tensor in, Tensor weight, bool accumulate)
{
    if (!fits(in, weight, 8) || !is_bf16(out)) return false;
    const DecodeLinearParams p = params_for(out, in, weight, 8);
    if (accumulate) launch<Epilogue::accumulate>(p, weight.rows(), m_stream);
    else launch<Epilogue::store>(p, weight.rows(), m_stream);
    return true;
}

bool CudaBackend::do_decode_norm_linear(Tensor out, Tensor x, Tensor norm_weight, float eps, Tensor weight, bool swiglu)
{
    const int64_t n = weight.rows(), pair = swiglu ? n / 2 : 8;
    if (!fits(x, weight, pair) || !is_bf16(out) || !is_bf16(norm_weight)) return false;
    DecodeLinearParams p = params_for(out, x, weight, pair);
    set_norm(p, norm_weight, eps);
    if (swiglu) launch<Epilogue::swiglu>(p, n, m_stream);
    else launch<Epilogue::store>(p, n, m_stream);
    return true;
}

bool CudaBackend::do_decode_norm_qkv(Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor x, Tensor norm_weight, float eps,
                                     Tensor weight, Tensor positions, const AttentionShape& s, float theta,
                                     const EmbeddingLookup& lookup)
{
    const int64_t D = s.head_dim;
    const bool look_up = !lookup.tokens.empty();
    if (D % 16 != 0 || !fits(x, weight, D / 2) || !is_bf16(qkv) || !is_bf16(norm_weight) || !is_bf16(k_cache) ||
        !is_bf16(v_cache) || (look_up && !is_bf16(lookup.table)))
        return false;
    DecodeLinearParams p = params_for(qkv, x, weight, D / 2);
    set_norm(p, norm_weight, eps);
    p.capacity = k_cache.shape[2];
    p.positions = positions.as<int32_t>();
    p.rope = rope_table(p.capacity, D, theta);
    p.k_cache = k_cache.as<bf16>();
    p.v_cache = v_cache.as<bf16>();
    p.heads = int(s.n_heads);
    p.kv_heads = int(s.n_kv_heads);
    p.head_dim = int(D);
    p.seq = int(s.seq);
    if (look_up) {
        p.tokens = lookup.tokens.as<int32_t>();
        p.table = lookup.table.as<bf16>();
        p.x_out = x.as<bf16>();
    }
    launch<Epilogue::rope_cache>(p, weight.rows(), m_stream);
    return true;
}

} // namespace crucible
