// Generation ops that feed the KV cache on CUDA: RoPE at per-row positions
// and the copy of each new token's keys and values into its cache slot.
//
// RoPE: one thread per (row, pair i) computes the angle for its position in
// double, exactly as the table of rope_forward is built (pow, sincos, one
// rounding to f32), so a token rotates here bit for bit as it does in the
// training path, and then turns pair i of every query and key head of the
// row. No table: the largest position lives on the device, and the kernel
// must not depend on it (CUDA graphs replay a fixed launch).
//
// Cache write: one thread per (row, KV head, 8 elements), 16-byte copies
// when the head size allows.
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_generation.h"

namespace crucible::cuda {

namespace {

template <class T>
__global__ void rope_at_kernel(T* __restrict__ qkv, const int32_t* __restrict__ positions, int64_t rows, int heads,
                               int half, int head_dim, int64_t ld, double theta)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * half) return;
    const int64_t row = i / half;
    const int k = int(i % half);
    const int p = positions[row];
    if (p < 0) return;
    const double inv_freq = pow(theta, -2.0 * double(k) / double(head_dim));
    double sn_d, cs_d;
    sincos(double(p) * inv_freq, &sn_d, &cs_d);
    const float cs = float(cs_d), sn = float(sn_d);
    T* base = qkv + row * ld + k;
    for (int h = 0; h < heads; ++h) {
        T* x = base + int64_t(h) * head_dim;
        const float a = to_f(x[0]), b = to_f(x[half]);
        x[0] = from_f<T>(a * cs - b * sn);
        x[half] = from_f<T>(b * cs + a * sn);
    }
}

// VEC: 8 elements per thread with 16-byte (or 32-byte for f32) accesses.
template <class T, bool VEC>
__global__ void kv_cache_write_kernel(T* __restrict__ k_cache, T* __restrict__ v_cache, const T* __restrict__ qkv,
                                      const int32_t* __restrict__ positions, int64_t rows, int64_t seq, int heads,
                                      int kv_heads, int head_dim, int64_t capacity)
{
    const int chunks = VEC ? head_dim / 8 : head_dim;
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= rows * kv_heads * chunks) return;
    const int c = int(i % chunks);
    const int kv = int((i / chunks) % kv_heads);
    const int64_t row = i / (int64_t(chunks) * kv_heads);
    const int p = positions[row];
    if (p < 0 || p >= capacity) return;
    const int64_t b = row / seq;
    const int64_t ld = int64_t(heads + 2 * kv_heads) * head_dim;
    const int64_t at = ((b * kv_heads + kv) * capacity + p) * head_dim + (VEC ? c * 8 : c);
    const T* k = qkv + row * ld + int64_t(heads + kv) * head_dim + (VEC ? c * 8 : c);
    const T* v = k + int64_t(kv_heads) * head_dim;
    if constexpr (VEC) {
        float tmp[8];
        load8(tmp, k);
        store8(k_cache + at, tmp);
        load8(tmp, v);
        store8(v_cache + at, tmp);
    } else {
        k_cache[at] = k[0];
        v_cache[at] = v[0];
    }
}

} // namespace

void launch_rope_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta, cudaStream_t stream)
{
    const int64_t rows = s.tokens(), D = s.head_dim;
    if (rows == 0) return;
    const int half = int(D / 2);
    dispatch_act(qkv.dtype, "rope_forward_at", [&](auto tag) {
        using T = decltype(tag);
        rope_at_kernel<T><<<blocks_for(rows * half, 256), 256, 0, stream>>>(
            qkv.as<T>(), positions.as<int32_t>(), rows, int(s.n_heads + s.n_kv_heads), half, int(D), s.qkv_dim(),
            double(theta));
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void launch_kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions, const AttentionShape& s,
                           cudaStream_t stream)
{
    const int64_t rows = s.tokens(), D = s.head_dim;
    if (rows == 0) return;
    const bool vec = D % 8 == 0 && aligned16(qkv.data) && aligned16(k_cache.data) && aligned16(v_cache.data) &&
                     s.qkv_dim() % 8 == 0;
    dispatch_act(qkv.dtype, "kv_cache_write", [&](auto tag) {
        using T = decltype(tag);
        const int64_t n = rows * s.n_kv_heads * (vec ? D / 8 : D);
        auto launch = [&](auto kernel) {
            kernel<<<blocks_for(n, 256), 256, 0, stream>>>(k_cache.as<T>(), v_cache.as<T>(), qkv.as<T>(),
                                                           positions.as<int32_t>(), rows, s.seq, int(s.n_heads),
                                                           int(s.n_kv_heads), int(D), k_cache.shape[2]);
        };
        if (vec) launch(kv_cache_write_kernel<T, true>);
        else launch(kv_cache_write_kernel<T, false>);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace crucible::cuda
