// Naive attention: the T×T scores of every head materialised in memory.
//
// Forward: S = scale·Q·Kᵀ (cuBLASLt, batched over kv heads), a row softmax
// with the causal mask (also writing lse), O = P·V. Backward: S is recomputed
// and turned into P with the saved lse, dP = dO·Vᵀ, dS = scale·P∘(dP − delta),
// dQ = dS·K, and dK = Σ dSᵀ·Q, dV = Σ Pᵀ·dO over the query heads of each kv
// head, accumulated in f32 by the GEMM (beta = 1) and converted at the end.
// It computes the full square (twice the causal work) and moves O(T²) bytes:
// the peer the flash kernels are measured against, not a path to train with.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_backend.h"

namespace crucible::cuda::attn {

namespace {

constexpr int kRowThreads = 256;

DType dtype_of(float) { return DType::f32; }
DType dtype_of(bf16) { return DType::bf16; }

// Rows of S [B·H·T, T] in place: masked softmax; lse per row.
template <class T>
__global__ void __launch_bounds__(kRowThreads) naive_softmax_kernel(T* s, float* __restrict__ lse, int len)
{
    __shared__ float shared[32];
    const int64_t row = blockIdx.x;
    const int i = int(row % len);   // query position: keys 0..i are visible
    T* x = s + row * len;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) mx = fmaxf(mx, to_f(x[j]));
    mx = block_max(mx, shared);
    float sum = 0.0f;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) sum += expf(to_f(x[j]) - mx);
    sum = block_sum(sum, shared);
    const float inv = 1.0f / sum;
    for (int j = threadIdx.x; j < len; j += blockDim.x)
        x[j] = from_f<T>(j <= i ? expf(to_f(x[j]) - mx) * inv : 0.0f);
    if (threadIdx.x == 0) lse[row] = mx + logf(sum);
}

// P = exp(S − lse), masked, in place.
template <class T>
__global__ void __launch_bounds__(kRowThreads) naive_probs_kernel(T* s, const float* __restrict__ lse, int len)
{
    const int64_t row = blockIdx.x;
    const int i = int(row % len);
    const float l = lse[row];
    T* x = s + row * len;
    for (int j = threadIdx.x; j < len; j += blockDim.x) x[j] = from_f<T>(j <= i ? expf(to_f(x[j]) - l) : 0.0f);
}

// dS = scale·P∘(dP − delta), written over dP.
template <class T>
__global__ void __launch_bounds__(kRowThreads)
    naive_dscores_kernel(T* dp, const T* __restrict__ p, const float* __restrict__ delta, int len, float scale)
{
    const int64_t row = blockIdx.x;
    const float d = delta[row];
    T* y = dp + row * len;
    const T* x = p + row * len;
    for (int j = threadIdx.x; j < len; j += blockDim.x) y[j] = from_f<T>(scale * to_f(x[j]) * (to_f(y[j]) - d));
}

// dqkv's key and value heads from the f32 accumulators [B·T, KV·D].
template <class T>
__global__ void naive_store_kv_kernel(T* __restrict__ dqkv, const float* __restrict__ dk, const float* __restrict__ dv,
                                      int64_t tokens, int64_t width, int64_t ld, int64_t k_offset)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= tokens * width) return;
    const int64_t t = i / width, c = i % width;
    dqkv[t * ld + k_offset + c] = from_f<T>(dk[i]);
    dqkv[t * ld + k_offset + width + c] = from_f<T>(dv[i]);
}

// Views of one batch's heads for the batched GEMMs: query head h = kvh·G + r.
struct Heads {
    const AttnArgs& a;
    int64_t TT() const { return int64_t(a.T) * a.T; }
    int64_t ld() const { return a.ld_qkv(); }
    template <class T> const T* q(int b, int r) const
    {
        return static_cast<const T*>(a.qkv) + int64_t(b) * a.T * ld() + int64_t(r) * a.D;
    }
    template <class T> const T* k(int b) const
    {
        return static_cast<const T*>(a.qkv) + int64_t(b) * a.T * ld() + int64_t(a.H) * a.D;
    }
    template <class T> const T* v(int b) const
    {
        return static_cast<const T*>(a.qkv) + int64_t(b) * a.T * ld() + int64_t(a.H + a.KV) * a.D;
    }
    int64_t score(int b, int r) const { return (int64_t(b) * a.H + r) * TT(); }   // element offset into S
};

// S[b, kvh·G + r] = scale·Q·Kᵀ for every kv head of batch b (one batched GEMM).
template <class T>
void scores(CudaBackend& be, const AttnArgs& a, T* S, int b, int r)
{
    const Heads hd{a};
    const DType dt = dtype_of(T{});
    const int G = a.group();
    GemmArgs g;
    g.out = S + hd.score(b, r);
    g.out_dtype = dt;
    g.ldo = a.T;
    g.out_batch_stride = int64_t(G) * hd.TT();
    g.a = GemmOperand{hd.q<T>(b, r), dt, hd.ld(), false, int64_t(G) * a.D};
    g.b = GemmOperand{hd.k<T>(b), dt, hd.ld(), true, a.D};
    g.m = a.T;
    g.n = a.T;
    g.k = a.D;
    g.alpha = a.scale;
    g.batch = a.KV;
    be.gemm(g);
}

template <class T>
void forward(CudaBackend& be, const AttnArgs& a)
{
    const Heads hd{a};
    const DType dt = dtype_of(T{});
    const int G = a.group();
    T* S = static_cast<T*>(be.scratch(sizeof(T) * size_t(a.B) * a.H * hd.TT()));
    for (int b = 0; b < a.B; ++b)
        for (int r = 0; r < G; ++r) scores<T>(be, a, S, b, r);
    naive_softmax_kernel<T><<<unsigned(int64_t(a.B) * a.H * a.T), kRowThreads, 0, be.stream()>>>(S, a.lse, a.T);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    for (int b = 0; b < a.B; ++b)
        for (int r = 0; r < G; ++r) {
            GemmArgs g;   // O_h = P_h·V
            g.out = static_cast<T*>(a.out) + int64_t(b) * a.T * a.ld_out() + int64_t(r) * a.D;
            g.out_dtype = dt;
            g.ldo = a.ld_out();
            g.out_batch_stride = int64_t(G) * a.D;
            g.a = GemmOperand{S + hd.score(b, r), dt, a.T, false, int64_t(G) * hd.TT()};
            g.b = GemmOperand{hd.v<T>(b), dt, hd.ld(), false, a.D};
            g.m = a.T;
            g.n = a.D;
            g.k = a.T;
            g.batch = a.KV;
            be.gemm(g);
        }
}

template <class T>
void backward(CudaBackend& be, AttnArgs a)
{
    const Heads hd{a};
    const DType dt = dtype_of(T{});
    const int G = a.group();
    const int64_t rows = int64_t(a.B) * a.H * a.T, kv_width = int64_t(a.KV) * a.D, tokens = int64_t(a.B) * a.T;
    ScratchPlan plan;
    const size_t o_p = plan.add(sizeof(T) * size_t(rows) * size_t(a.T));
    const size_t o_dp = plan.add(sizeof(T) * size_t(rows) * size_t(a.T));
    const size_t o_dk = plan.add(sizeof(float) * size_t(tokens * kv_width));
    const size_t o_dv = plan.add(sizeof(float) * size_t(tokens * kv_width));
    const size_t o_delta = plan.add(sizeof(float) * size_t(rows));
    char* base = static_cast<char*>(be.scratch(plan.total()));
    T* P = reinterpret_cast<T*>(base + o_p);
    T* dP = reinterpret_cast<T*>(base + o_dp);
    float* dK = reinterpret_cast<float*>(base + o_dk);
    float* dV = reinterpret_cast<float*>(base + o_dv);
    a.delta = reinterpret_cast<float*>(base + o_delta);
    attention_delta(a, dt, be.stream());

    for (int b = 0; b < a.B; ++b)
        for (int r = 0; r < G; ++r) scores<T>(be, a, P, b, r);
    naive_probs_kernel<T><<<unsigned(rows), kRowThreads, 0, be.stream()>>>(P, a.lse, a.T);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    for (int b = 0; b < a.B; ++b)
        for (int r = 0; r < G; ++r) {
            GemmArgs g;   // dP_h = dO_h·Vᵀ
            g.out = dP + hd.score(b, r);
            g.out_dtype = dt;
            g.ldo = a.T;
            g.out_batch_stride = int64_t(G) * hd.TT();
            g.a = GemmOperand{static_cast<const T*>(a.dout) + int64_t(b) * a.T * a.ld_out() + int64_t(r) * a.D, dt,
                              a.ld_out(), false, int64_t(G) * a.D};
            g.b = GemmOperand{hd.v<T>(b), dt, hd.ld(), true, a.D};
            g.m = a.T;
            g.n = a.T;
            g.k = a.D;
            g.batch = a.KV;
            be.gemm(g);
        }
    naive_dscores_kernel<T><<<unsigned(rows), kRowThreads, 0, be.stream()>>>(dP, P, a.delta, a.T, a.scale);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    for (int b = 0; b < a.B; ++b)
        for (int r = 0; r < G; ++r) {
            const T* dS = dP + hd.score(b, r);
            GemmArgs q;   // dQ_h = dS_h·K, straight into dqkv
            q.out = static_cast<T*>(a.dqkv) + int64_t(b) * a.T * hd.ld() + int64_t(r) * a.D;
            q.out_dtype = dt;
            q.ldo = hd.ld();
            q.out_batch_stride = int64_t(G) * a.D;
            q.a = GemmOperand{dS, dt, a.T, false, int64_t(G) * hd.TT()};
            q.b = GemmOperand{hd.k<T>(b), dt, hd.ld(), false, a.D};
            q.m = a.T;
            q.n = a.D;
            q.k = a.T;
            q.batch = a.KV;
            be.gemm(q);

            GemmArgs k;   // dK_kvh (+)= dS_hᵀ·Q_h
            k.out = dK + int64_t(b) * a.T * kv_width;
            k.out_dtype = DType::f32;
            k.ldo = kv_width;
            k.out_batch_stride = a.D;
            k.a = GemmOperand{dS, dt, a.T, true, int64_t(G) * hd.TT()};
            k.b = GemmOperand{hd.q<T>(b, r), dt, hd.ld(), false, int64_t(G) * a.D};
            k.m = a.T;
            k.n = a.D;
            k.k = a.T;
            k.beta = r > 0 ? 1.0f : 0.0f;
            k.batch = a.KV;
            be.gemm(k);

            GemmArgs v = k;   // dV_kvh (+)= P_hᵀ·dO_h
            v.out = dV + int64_t(b) * a.T * kv_width;
            v.a = GemmOperand{P + hd.score(b, r), dt, a.T, true, int64_t(G) * hd.TT()};
            v.b = GemmOperand{static_cast<const T*>(a.dout) + int64_t(b) * a.T * a.ld_out() + int64_t(r) * a.D, dt,
                              a.ld_out(), false, int64_t(G) * a.D};
            be.gemm(v);
        }
    naive_store_kv_kernel<T><<<blocks_for(tokens * kv_width, 256), 256, 0, be.stream()>>>(
        static_cast<T*>(a.dqkv), dK, dV, tokens, kv_width, hd.ld(), int64_t(a.H) * a.D);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
}

} // namespace

void naive_forward(CudaBackend& be, const AttnArgs& a, DType dtype)
{
    dispatch_act(dtype, "naive attention", [&](auto tag) { forward<decltype(tag)>(be, a); });
}

void naive_backward(CudaBackend& be, const AttnArgs& a, DType dtype)
{
    dispatch_act(dtype, "naive attention", [&](auto tag) { backward<decltype(tag)>(be, a); });
}

} // namespace crucible::cuda::attn
