// Exact attention: one warp per query row (forward, dQ) or key row (dK, dV),
// the head dimension spread over the lanes, f32 arithmetic throughout with
// accurate exponentials. No tiling and no tensor cores: it serves the f32
// parity mode and head dims the flash kernels are not built for, and doubles
// as a readable statement of what the flash kernels compute.
//
// Also here: delta[b, h, t] = Σ_d dout·out, used by every backward.
#include "kernels/cuda/attention_common.cuh"

namespace crucible::cuda::attn {

namespace {

// Loads one head row (D elements) into per-lane registers: lane holds d = lane + 32·i.
template <class T, int NPL>
__device__ __forceinline__ void load_head(float v[NPL], const T* p, int D, int lane)
{
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
        const int d = lane + 32 * i;
        v[i] = d < D ? to_f(p[d]) : 0.0f;
    }
}

template <class T, int NPL>
__device__ __forceinline__ float dot_head(const float q[NPL], const T* p, int D, int lane)
{
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
        const int d = lane + 32 * i;
        if (d < D) s += q[i] * to_f(p[d]);
    }
    return warp_sum(s);
}

// grid: warps over (b, h, t)
template <class T, int NPL>
__global__ void exact_forward_kernel(AttnArgs a)
{
    const int lane = threadIdx.x % 32;
    const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= int64_t(a.B) * a.H * a.T) return;
    const int t = int(w % a.T), h = int((w / a.T) % a.H), b = int(w / (int64_t(a.T) * a.H));
    const int D = a.D, kvh = h / a.group();
    const int64_t ld = a.ld_qkv();
    const T* rows = static_cast<const T*>(a.qkv) + int64_t(b) * a.T * ld;
    float q[NPL], o[NPL];
    load_head<T, NPL>(q, rows + t * ld + int64_t(h) * D, D, lane);
#pragma unroll
    for (int i = 0; i < NPL; ++i) o[i] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j <= t; ++j) {
        const float s = dot_head<T, NPL>(q, rows + j * ld + int64_t(a.H + kvh) * D, D, lane) * a.scale;
        const float m_new = fmaxf(m, s);
        const float corr = expf(m - m_new), p = expf(s - m_new);
        l = l * corr + p;
        const T* v = rows + j * ld + int64_t(a.H + a.KV + kvh) * D;
#pragma unroll
        for (int i = 0; i < NPL; ++i) {
            const int d = lane + 32 * i;
            o[i] = o[i] * corr + (d < D ? p * to_f(v[d]) : 0.0f);
        }
        m = m_new;
    }
    T* out = static_cast<T*>(a.out) + (int64_t(b) * a.T + t) * a.ld_out() + int64_t(h) * D;
    const float inv = 1.0f / l;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
        const int d = lane + 32 * i;
        if (d < D) out[d] = from_f<T>(o[i] * inv);
    }
    if (lane == 0) a.lse[(int64_t(b) * a.H + h) * a.T + t] = m + logf(l);
}

// dQ: warps over (b, h, t)
template <class T, int NPL>
__global__ void exact_backward_dq_kernel(AttnArgs a)
{
    const int lane = threadIdx.x % 32;
    const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= int64_t(a.B) * a.H * a.T) return;
    const int t = int(w % a.T), h = int((w / a.T) % a.H), b = int(w / (int64_t(a.T) * a.H));
    const int D = a.D, kvh = h / a.group();
    const int64_t ld = a.ld_qkv();
    const T* rows = static_cast<const T*>(a.qkv) + int64_t(b) * a.T * ld;
    const int64_t stat = (int64_t(b) * a.H + h) * a.T + t;
    const float lse = a.lse[stat], delta = a.delta[stat];
    float q[NPL], go[NPL], dq[NPL];
    load_head<T, NPL>(q, rows + t * ld + int64_t(h) * D, D, lane);
    load_head<T, NPL>(go, static_cast<const T*>(a.dout) + (int64_t(b) * a.T + t) * a.ld_out() + int64_t(h) * D, D, lane);
#pragma unroll
    for (int i = 0; i < NPL; ++i) dq[i] = 0.0f;
    for (int j = 0; j <= t; ++j) {
        const T* k = rows + j * ld + int64_t(a.H + kvh) * D;
        const T* v = rows + j * ld + int64_t(a.H + a.KV + kvh) * D;
        const float p = expf(dot_head<T, NPL>(q, k, D, lane) * a.scale - lse);
        const float ds = p * (dot_head<T, NPL>(go, v, D, lane) - delta);
#pragma unroll
        for (int i = 0; i < NPL; ++i) {
            const int d = lane + 32 * i;
            if (d < D) dq[i] += ds * to_f(k[d]);
        }
    }
    T* out = static_cast<T*>(a.dqkv) + (int64_t(b) * a.T + t) * ld + int64_t(h) * D;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
        const int d = lane + 32 * i;
        if (d < D) out[d] = from_f<T>(dq[i] * a.scale);
    }
}

// dK, dV: warps over (b, kv head, key j); sums over the group's query heads
// and the queries at or after j, in a fixed order.
template <class T, int NPL>
__global__ void exact_backward_dkdv_kernel(AttnArgs a)
{
    const int lane = threadIdx.x % 32;
    const int64_t w = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    if (w >= int64_t(a.B) * a.KV * a.T) return;
    const int j = int(w % a.T), kvh = int((w / a.T) % a.KV), b = int(w / (int64_t(a.T) * a.KV));
    const int D = a.D, G = a.group();
    const int64_t ld = a.ld_qkv(), ldo = a.ld_out();
    const T* rows = static_cast<const T*>(a.qkv) + int64_t(b) * a.T * ld;
    const T* dorows = static_cast<const T*>(a.dout) + int64_t(b) * a.T * ldo;
    float k[NPL], v[NPL], dk[NPL], dv[NPL];
    load_head<T, NPL>(k, rows + j * ld + int64_t(a.H + kvh) * D, D, lane);
    load_head<T, NPL>(v, rows + j * ld + int64_t(a.H + a.KV + kvh) * D, D, lane);
#pragma unroll
    for (int i = 0; i < NPL; ++i) dk[i] = dv[i] = 0.0f;
    for (int r = 0; r < G; ++r) {
        const int h = kvh * G + r;
        const int64_t stat = (int64_t(b) * a.H + h) * a.T;
        for (int t = j; t < a.T; ++t) {
            const T* q = rows + t * ld + int64_t(h) * D;
            const T* go = dorows + t * ldo + int64_t(h) * D;
            const float p = expf(dot_head<T, NPL>(k, q, D, lane) * a.scale - a.lse[stat + t]);
            const float ds = p * (dot_head<T, NPL>(v, go, D, lane) - a.delta[stat + t]);
#pragma unroll
            for (int i = 0; i < NPL; ++i) {
                const int d = lane + 32 * i;
                if (d < D) {
                    dk[i] += ds * to_f(q[d]);
                    dv[i] += p * to_f(go[d]);
                }
            }
        }
    }
    T* drow = static_cast<T*>(a.dqkv) + (int64_t(b) * a.T + j) * ld;
#pragma unroll
    for (int i = 0; i < NPL; ++i) {
        const int d = lane + 32 * i;
        if (d < D) {
            drow[int64_t(a.H + kvh) * D + d] = from_f<T>(dk[i] * a.scale);
            drow[int64_t(a.H + a.KV + kvh) * D + d] = from_f<T>(dv[i]);
        }
    }
}

// delta: rows of dout and out [B·T, H·D] are D contiguous elements and
// consecutive (token, head) rows are adjacent. GROUP = D/8 lanes share a row,
// one 16-byte chunk each, and add up with shuffles; other head dims take one
// thread per row.
template <class T, int GROUP>
__global__ void delta_kernel(AttnArgs a)
{
    const int64_t rows = int64_t(a.B) * a.T * a.H;
    const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t i = GROUP > 0 ? tid / GROUP : tid;   // token·H + h
    const int D = a.D;
    float s = 0.0f;
    if (i < rows) {
        const T* go = static_cast<const T*>(a.dout) + i * D;
        const T* o = static_cast<const T*>(a.fwd_out) + i * D;
        if constexpr (GROUP > 0) {
            const int c = int(tid % GROUP) * 8;
            float x[8], y[8];
            load8(x, go + c);
            load8(y, o + c);
#pragma unroll
            for (int k = 0; k < 8; ++k) s += x[k] * y[k];
        } else {
            for (int d = 0; d < D; ++d) s += to_f(go[d]) * to_f(o[d]);
        }
    }
    if constexpr (GROUP > 1) {
#pragma unroll
        for (int off = GROUP / 2; off > 0; off /= 2) s += __shfl_xor_sync(0xffffffffu, s, off);
        if (tid % GROUP != 0) return;
    }
    if (i >= rows) return;
    const int64_t token = i / a.H, h = i % a.H, b = token / a.T, t = token % a.T;
    a.delta[(b * a.H + h) * a.T + t] = s;
}

constexpr int kWarpsPerBlock = 4;

template <class T, int NPL>
void launch_exact(const AttnArgs& a, int64_t warps, int which, cudaStream_t stream)
{
    const unsigned blocks = blocks_for(warps, kWarpsPerBlock);
    if (which == 0) exact_forward_kernel<T, NPL><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(a);
    else if (which == 1) exact_backward_dq_kernel<T, NPL><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(a);
    else exact_backward_dkdv_kernel<T, NPL><<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(a);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
}

template <class T>
void dispatch_lanes(const AttnArgs& a, int64_t warps, int which, cudaStream_t stream)
{
    const int npl = (a.D + 31) / 32;
    if (npl <= 1) launch_exact<T, 1>(a, warps, which, stream);
    else if (npl <= 2) launch_exact<T, 2>(a, warps, which, stream);
    else if (npl <= 4) launch_exact<T, 4>(a, warps, which, stream);
    else if (npl <= 8) launch_exact<T, 8>(a, warps, which, stream);
    else if (npl <= 16) launch_exact<T, 16>(a, warps, which, stream);
    else throw_error(__FILE__, __LINE__, "attention: head_dim " + std::to_string(a.D) + " is larger than 512");
}

} // namespace

void exact_forward(const AttnArgs& a, DType dtype, cudaStream_t stream)
{
    dispatch_act(dtype, "attention", [&](auto tag) {
        dispatch_lanes<decltype(tag)>(a, int64_t(a.B) * a.H * a.T, 0, stream);
    });
}

void exact_backward(const AttnArgs& a, DType dtype, cudaStream_t stream)
{
    dispatch_act(dtype, "attention", [&](auto tag) {
        using T = decltype(tag);
        dispatch_lanes<T>(a, int64_t(a.B) * a.H * a.T, 1, stream);
        dispatch_lanes<T>(a, int64_t(a.B) * a.KV * a.T, 2, stream);
    });
}

void attention_delta(const AttnArgs& a, DType dtype, cudaStream_t stream)
{
    dispatch_act(dtype, "attention", [&](auto tag) {
        using T = decltype(tag);
        const int64_t rows = int64_t(a.B) * a.T * a.H;
        const bool vec = aligned16(a.dout) && aligned16(a.fwd_out);
        auto launch = [&](auto kernel, int group) {
            kernel<<<blocks_for(rows * std::max(group, 1), 256), 256, 0, stream>>>(a);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        };
        if (vec && a.D == 32) launch(delta_kernel<T, 4>, 4);
        else if (vec && a.D == 64) launch(delta_kernel<T, 8>, 8);
        else if (vec && a.D == 128) launch(delta_kernel<T, 16>, 16);
        else if (vec && a.D == 256) launch(delta_kernel<T, 32>, 32);
        else launch(delta_kernel<T, 0>, 0);
    });
}

} // namespace crucible::cuda::attn
