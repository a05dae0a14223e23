// Shared device helpers for the CUDA backend: element types and conversions,
// 16-byte packed loads and stores, warp and block reductions.
//
// Every kernel in kernels/cuda is templated on its activation type (float in
// the f32 parity mode, __nv_bfloat16 otherwise) and does its arithmetic in
// f32; Pack<T> moves 16 bytes per thread (8 bf16 or 4 floats) so elementwise
// kernels issue full-width memory transactions.
#pragma once

#include "kernels/cuda/cuda_check.h"
#include "kernels/tensor.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

namespace crucible::cuda {

using bf16 = __nv_bfloat16;

// ---- element conversions --------------------------------------------------------

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(int32_t x) { return static_cast<float>(x); }

template <class T> __device__ __forceinline__ T from_f(float x);
template <> __device__ __forceinline__ float from_f<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float x) { return __float2bfloat16_rn(x); }
template <> __device__ __forceinline__ __half from_f<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ int32_t from_f<int32_t>(float x) { return __float2int_rn(x); }

// ---- 16-byte packs ----------------------------------------------------------------

template <class T> struct alignas(16) Pack {
    static constexpr int N = 16 / sizeof(T);
    T v[N];
};

template <class T> __device__ __forceinline__ Pack<T> load_pack(const T* p)
{
    Pack<T> r;
    *reinterpret_cast<int4*>(&r) = *reinterpret_cast<const int4*>(p);
    return r;
}

template <class T> __device__ __forceinline__ void store_pack(T* p, const Pack<T>& v)
{
    *reinterpret_cast<int4*>(p) = *reinterpret_cast<const int4*>(&v);
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

// ---- reductions ---------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block; every thread gets the result. `shared` holds 32 values.
// The order of additions is fixed, so the result is deterministic.
template <class V> __device__ __forceinline__ V block_sum(V v, V* shared)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    V total = lane < warps ? shared[lane] : V(0);
    return warp_sum(total);
}

__device__ __forceinline__ float block_max(float v, float* shared)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = (blockDim.x + 31) / 32;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    float m = lane < warps ? shared[lane] : -INFINITY;
    return warp_max(m);
}

inline unsigned blocks_for(int64_t n, int64_t per_block)
{
    const int64_t b = (n + per_block - 1) / per_block;
    return static_cast<unsigned>(b < 1 ? 1 : b);
}

} // namespace crucible::cuda

namespace crucible::cuda {

// Calls f(T{}) with T the C++ type of a floating dtype (f32, bf16, f16).
template <class F> void dispatch_float(DType dtype, const char* what, F&& f)
{
    switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(bf16{}); return;
    case DType::f16: f(__half{}); return;
    default: break;
    }
    throw_error(__FILE__, __LINE__, std::string(what) + ": unsupported dtype " + dtype_name(dtype));
}

// As dispatch_float, for the activation types the ops compute in (f32, bf16).
template <class F> void dispatch_act(DType dtype, const char* what, F&& f)
{
    switch (dtype) {
    case DType::f32: f(float{}); return;
    case DType::bf16: f(bf16{}); return;
    default: break;
    }
    throw_error(__FILE__, __LINE__, std::string(what) + ": activations must be f32 or bf16, got " + dtype_name(dtype));
}

// Loads and stores of 8 consecutive elements (16 or 32 bytes, 16-byte aligned).
template <class T> __device__ __forceinline__ void load8(float out[8], const T* p)
{
    constexpr int kVecs = int(8 * sizeof(T) / 16);
    alignas(16) T tmp[8];
#pragma unroll
    for (int i = 0; i < kVecs; ++i) reinterpret_cast<int4*>(tmp)[i] = reinterpret_cast<const int4*>(p)[i];
#pragma unroll
    for (int i = 0; i < 8; ++i) out[i] = to_f(tmp[i]);
}

template <class T> __device__ __forceinline__ void store8(T* p, const float in[8])
{
    constexpr int kVecs = int(8 * sizeof(T) / 16);
    alignas(16) T tmp[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) tmp[i] = from_f<T>(in[i]);
#pragma unroll
    for (int i = 0; i < kVecs; ++i) reinterpret_cast<int4*>(p)[i] = reinterpret_cast<const int4*>(tmp)[i];
}

} // namespace crucible::cuda
