// Rotary position embedding, half-split ("rotate half") as Hugging Face Llama.
//
// Pair (i, i + D/2) of each query and key head turns by pos·theta^(-2i/D).
// The (cos, sin) table is computed once per (head_dim, theta) in double and
// rounded to f32, so positions far into a long context keep their accuracy;
// it grows when a longer position range is asked for. The kernel rotates in
// place, 8 pairs per thread with 16-byte accesses when D/2 is a multiple of 8.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

namespace crucible {

using namespace cuda;

namespace {

__global__ void rope_table_kernel(float2* __restrict__ table, int64_t positions, int half, int head_dim, double theta)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= positions * half) return;
    const int64_t pos = i / half;
    const int k = int(i % half);
    const double inv_freq = pow(theta, -2.0 * double(k) / double(head_dim));
    double s, c;
    sincos(double(pos) * inv_freq, &s, &c);
    table[i] = make_float2(float(c), float(s));
}

// One thread per (token, head, group of PAIRS pairs); sign = -1 rotates back.
template <class T, int PAIRS>
__global__ void rope_kernel(T* qkv, const float2* __restrict__ table, int64_t tokens, int64_t seq, int heads,
                            int half, int64_t ld, int64_t pos_offset, float sign)
{
    const int groups = half / PAIRS;
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= tokens * heads * groups) return;
    const int g = int(i % groups);
    const int64_t th = i / groups;
    const int h = int(th % heads);
    const int64_t token = th / heads;
    const int64_t pos = pos_offset + token % seq;
    T* x = qkv + token * ld + int64_t(h) * 2 * half + g * PAIRS;
    T* y = x + half;
    const float2* cs = table + pos * half + g * PAIRS;
    if constexpr (PAIRS == 8) {
        float a[8], b[8];
        load8(a, x);
        load8(b, y);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float2 t = cs[k];
            const float sn = sign * t.y;
            const float xa = a[k], xb = b[k];
            a[k] = xa * t.x - xb * sn;
            b[k] = xb * t.x + xa * sn;
        }
        store8(x, a);
        store8(y, b);
    } else {
        const float2 t = cs[0];
        const float sn = sign * t.y;
        const float xa = to_f(x[0]), xb = to_f(y[0]);
        x[0] = from_f<T>(xa * t.x - xb * sn);
        y[0] = from_f<T>(xb * t.x + xa * sn);
    }
}

void launch_rope(CudaBackend& be, Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta, float sign)
{
    const int64_t N = s.tokens(), D = s.head_dim;
    if (N == 0) return;
    const float2* table = be.rope_table(pos_offset + s.seq, D, theta);
    const int half = int(D / 2), heads = int(s.n_heads + s.n_kv_heads);
    const bool vec = half % 8 == 0 && aligned16(qkv.data) && s.qkv_dim() % 8 == 0;
    dispatch_act(qkv.dtype, "rope", [&](auto tag) {
        using T = decltype(tag);
        if (vec) {
            const int64_t n = N * heads * (half / 8);
            rope_kernel<T, 8><<<blocks_for(n, 256), 256, 0, be.stream()>>>(qkv.as<T>(), table, N, s.seq, heads, half,
                                                                           s.qkv_dim(), pos_offset, sign);
        } else {
            const int64_t n = N * heads * half;
            rope_kernel<T, 1><<<blocks_for(n, 256), 256, 0, be.stream()>>>(qkv.as<T>(), table, N, s.seq, heads, half,
                                                                           s.qkv_dim(), pos_offset, sign);
        }
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace

const float2* CudaBackend::rope_table(int64_t positions, int64_t head_dim, float theta)
{
    if (m_rope && head_dim == m_rope_dim && theta == m_rope_theta && positions <= m_rope_positions) return m_rope;
    const int64_t grown = std::max<int64_t>(positions, 1024);
    if (m_rope) {
        deallocate(m_rope);   // waits for queued work that may still read it
        m_rope = nullptr;
        ++m_graph_epoch;
    }
    const int half = int(head_dim / 2);
    m_rope = static_cast<float2*>(allocate(sizeof(float2) * size_t(grown) * size_t(half)));
    m_rope_positions = grown;
    m_rope_dim = head_dim;
    m_rope_theta = theta;
    rope_table_kernel<<<blocks_for(grown * half, 256), 256, 0, m_stream>>>(m_rope, grown, half, int(head_dim),
                                                                           double(theta));
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    return m_rope;
}

void CudaBackend::do_rope_forward(Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta)
{
    launch_rope(*this, qkv, s, pos_offset, theta, 1.0f);
}

void CudaBackend::do_rope_backward(Tensor dqkv, const AttentionShape& s, int64_t pos_offset, float theta)
{
    launch_rope(*this, dqkv, s, pos_offset, theta, -1.0f);
}

} // namespace crucible
