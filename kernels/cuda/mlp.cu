// MLP activations: SwiGLU over the packed [gate | up] rows and exact (erf)
// GELU, forward and backward. Memory-bound: 8 elements per thread with
// 16-byte accesses when the row width allows, f32 arithmetic.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

namespace crucible {

using namespace cuda;

namespace {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

// out[r, i] = silu(gate[r, i])·up[r, i]; gate_up [rows, 2F].
template <class T, int V>
__global__ void swiglu_forward_kernel(T* __restrict__ out, const T* __restrict__ gate_up, int64_t rows, int64_t F)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
    if (i >= rows * F) return;
    const int64_t r = i / F, c = i % F;
    const T* gate = gate_up + r * 2 * F + c;
    const T* up = gate + F;
    if constexpr (V == 8) {
        float g[8], u[8];
        load8(g, gate);
        load8(u, up);
#pragma unroll
        for (int k = 0; k < 8; ++k) g[k] = g[k] * sigmoid(g[k]) * u[k];
        store8(out + i, g);
    } else {
        const float g = to_f(gate[0]);
        out[i] = from_f<T>(g * sigmoid(g) * to_f(up[0]));
    }
}

template <class T, int V>
__global__ void swiglu_backward_kernel(T* __restrict__ dgate_up, const T* __restrict__ dout,
                                       const T* __restrict__ gate_up, int64_t rows, int64_t F)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
    if (i >= rows * F) return;
    const int64_t r = i / F, c = i % F;
    const T* gate = gate_up + r * 2 * F + c;
    const T* up = gate + F;
    T* dgate = dgate_up + r * 2 * F + c;
    T* dup = dgate + F;
    if constexpr (V == 8) {
        float g[8], u[8], d[8], dg[8], du[8];
        load8(g, gate);
        load8(u, up);
        load8(d, dout + i);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float s = sigmoid(g[k]);
            dg[k] = d[k] * u[k] * s * (1.0f + g[k] * (1.0f - s));
            du[k] = d[k] * g[k] * s;
        }
        store8(dgate, dg);
        store8(dup, du);
    } else {
        const float g = to_f(gate[0]), u = to_f(up[0]), d = to_f(dout[i]);
        const float s = sigmoid(g);
        dgate[0] = from_f<T>(d * u * s * (1.0f + g * (1.0f - s)));
        dup[0] = from_f<T>(d * g * s);
    }
}

template <class T, int V>
__global__ void gelu_forward_kernel(T* __restrict__ out, const T* __restrict__ in, int64_t n)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
    if (i >= n) return;
    if constexpr (V == 8) {
        float x[8];
        load8(x, in + i);
#pragma unroll
        for (int k = 0; k < 8; ++k) x[k] = 0.5f * x[k] * (1.0f + erff(x[k] * kInvSqrt2));
        store8(out + i, x);
    } else {
        const float x = to_f(in[i]);
        out[i] = from_f<T>(0.5f * x * (1.0f + erff(x * kInvSqrt2)));
    }
}

// d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
template <class T, int V>
__global__ void gelu_backward_kernel(T* __restrict__ din, const T* __restrict__ dout, const T* __restrict__ in,
                                     int64_t n)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * V;
    if (i >= n) return;
    if constexpr (V == 8) {
        float x[8], d[8];
        load8(x, in + i);
        load8(d, dout + i);
#pragma unroll
        for (int k = 0; k < 8; ++k) {
            const float cdf = 0.5f * (1.0f + erff(x[k] * kInvSqrt2));
            const float pdf = kInvSqrt2Pi * expf(-0.5f * x[k] * x[k]);
            x[k] = d[k] * (cdf + x[k] * pdf);
        }
        store8(din + i, x);
    } else {
        const float x = to_f(in[i]);
        const float cdf = 0.5f * (1.0f + erff(x * kInvSqrt2));
        const float pdf = kInvSqrt2Pi * expf(-0.5f * x * x);
        din[i] = from_f<T>(to_f(dout[i]) * (cdf + x * pdf));
    }
}

bool all_aligned(std::initializer_list<const void*> ptrs)
{
    for (const void* p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

} // namespace

void CudaBackend::do_swiglu_forward(Tensor out, Tensor gate_up)
{
    const int64_t rows = gate_up.rows(), F = gate_up.cols() / 2;
    const int64_t n = rows * F;
    if (n == 0) return;
    const bool vec = F % 8 == 0 && all_aligned({out.data, gate_up.data});
    dispatch_act(gate_up.dtype, "swiglu_forward", [&](auto tag) {
        using T = decltype(tag);
        if (vec) swiglu_forward_kernel<T, 8><<<blocks_for(n, 256 * 8), 256, 0, m_stream>>>(out.as<T>(), gate_up.as<T>(), rows, F);
        else swiglu_forward_kernel<T, 1><<<blocks_for(n, 256), 256, 0, m_stream>>>(out.as<T>(), gate_up.as<T>(), rows, F);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up)
{
    const int64_t rows = gate_up.rows(), F = gate_up.cols() / 2;
    const int64_t n = rows * F;
    if (n == 0) return;
    const bool vec = F % 8 == 0 && all_aligned({dgate_up.data, dout.data, gate_up.data});
    dispatch_act(gate_up.dtype, "swiglu_backward", [&](auto tag) {
        using T = decltype(tag);
        if (vec)
            swiglu_backward_kernel<T, 8><<<blocks_for(n, 256 * 8), 256, 0, m_stream>>>(dgate_up.as<T>(), dout.as<T>(),
                                                                                      gate_up.as<T>(), rows, F);
        else
            swiglu_backward_kernel<T, 1><<<blocks_for(n, 256), 256, 0, m_stream>>>(dgate_up.as<T>(), dout.as<T>(),
                                                                                  gate_up.as<T>(), rows, F);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_gelu_forward(Tensor out, Tensor in)
{
    const int64_t n = in.numel();
    if (n == 0) return;
    const bool vec = all_aligned({out.data, in.data});
    dispatch_act(in.dtype, "gelu_forward", [&](auto tag) {
        using T = decltype(tag);
        // The vector kernel needs whole groups of 8: run it on the prefix, then the tail.
        const int64_t head = vec ? n / 8 * 8 : 0;
        if (head) gelu_forward_kernel<T, 8><<<blocks_for(head, 256 * 8), 256, 0, m_stream>>>(out.as<T>(), in.as<T>(), head);
        if (n > head)
            gelu_forward_kernel<T, 1><<<blocks_for(n - head, 256), 256, 0, m_stream>>>(out.as<T>() + head,
                                                                                      in.as<T>() + head, n - head);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_gelu_backward(Tensor din, Tensor dout, Tensor in)
{
    const int64_t n = in.numel();
    if (n == 0) return;
    const bool vec = all_aligned({din.data, dout.data, in.data});
    dispatch_act(in.dtype, "gelu_backward", [&](auto tag) {
        using T = decltype(tag);
        const int64_t head = vec ? n / 8 * 8 : 0;
        if (head)
            gelu_backward_kernel<T, 8><<<blocks_for(head, 256 * 8), 256, 0, m_stream>>>(din.as<T>(), dout.as<T>(),
                                                                                        in.as<T>(), head);
        if (n > head)
            gelu_backward_kernel<T, 1><<<blocks_for(n - head, 256), 256, 0, m_stream>>>(
                din.as<T>() + head, dout.as<T>() + head, in.as<T>() + head, n - head);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace crucible
