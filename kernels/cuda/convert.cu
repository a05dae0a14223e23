// Transfers, dtype conversion, fill and add.
//
// Host <-> device copies go straight through cudaMemcpyAsync when the dtypes
// match; otherwise the data crosses in its own dtype into scratch and one
// kernel converts it on the device. Conversion and add kernels move 8
// elements per thread with 16-byte accesses (a scalar tail handles the rest).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"
#include "kernels/dropout_mask.h"

namespace crucible {

using namespace cuda;

namespace {

// ---- kernels ------------------------------------------------------------------------------

template <class D, class S>
__global__ void convert_kernel(D* __restrict__ dst, const S* __restrict__ src, int64_t n, bool vec)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
    if (i >= n) return;
    if (vec && i + 8 <= n) {
        float v[8];
        load8(v, src + i);
        store8(dst + i, v);
    } else {
        for (int64_t j = i; j < n && j < i + 8; ++j) dst[j] = from_f<D>(to_f(src[j]));
    }
}

template <class T> __global__ void fill_kernel(T* __restrict__ dst, T value, int64_t n)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = value;
}

template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n, bool vec)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 8;
    if (i >= n) return;
    if (vec && i + 8 <= n) {
        float x[8], y[8];
        load8(x, a + i);
        load8(y, b + i);
#pragma unroll
        for (int k = 0; k < 8; ++k) x[k] += y[k];
        store8(out + i, x);
    } else {
        for (int64_t j = i; j < n && j < i + 8; ++j) out[j] = from_f<T>(to_f(a[j]) + to_f(b[j]));
    }
}

template <class T>
__global__ void dropout_scale_kernel(T* out, const T* in, int64_t n, float kept, uint64_t seed, uint32_t threshold)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const bool keep = threshold == 0 || dropout_keeps(seed, uint64_t(i), threshold);
    out[i] = from_f<T>(keep ? to_f(in[i]) * kept : 0.0f);
}

// ---- launchers -------------------------------------------------------------------------------

template <class F> void dispatch_any(DType dtype, F&& f)
{
    if (dtype == DType::i32) f(int32_t{});
    else dispatch_float(dtype, "convert", f);
}

void launch_convert(void* dst, DType dst_t, const void* src, DType src_t, int64_t n, cudaStream_t stream)
{
    if (n == 0) return;
    const bool vec = aligned16(dst) && aligned16(src);
    dispatch_any(dst_t, [&](auto d) {
        using D = decltype(d);
        dispatch_any(src_t, [&](auto s) {
            using S = decltype(s);
            convert_kernel<D, S><<<blocks_for(n, 256 * 8), 256, 0, stream>>>(
                static_cast<D*>(dst), static_cast<const S*>(src), n, vec);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        });
    });
}

} // namespace

void CudaBackend::do_upload(Tensor dst, const void* host_src, DType host_dtype)
{
    const int64_t n = dst.numel();
    if (n == 0) return;
    if (host_dtype == dst.dtype) {
        // From pageable memory the copy returns once the source is staged, so
        // the caller may reuse its buffer at once; from page-locked memory it
        // is queued (Backend::upload). No sync either way.
        CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(dst.data, host_src, dst.bytes(), cudaMemcpyHostToDevice, m_stream));
        return;
    }
    void* staging = scratch(dtype_bytes(host_dtype, n));
    CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(staging, host_src, dtype_bytes(host_dtype, n), cudaMemcpyHostToDevice, m_stream));
    launch_convert(dst.data, dst.dtype, staging, host_dtype, n, m_stream);
}

void CudaBackend::do_download(void* host_dst, DType host_dtype, Tensor src)
{
    const int64_t n = src.numel();
    if (n == 0) return;
    const void* from = src.data;
    if (host_dtype != src.dtype) {
        void* staging = scratch(dtype_bytes(host_dtype, n));
        launch_convert(staging, host_dtype, src.data, src.dtype, n, m_stream);
        from = staging;
    }
    CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(host_dst, from, dtype_bytes(host_dtype, n), cudaMemcpyDeviceToHost, m_stream));
    CRUCIBLE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
}

void CudaBackend::do_convert(Tensor dst, Tensor src)
{
    if (dst.numel() == 0 || dst.data == src.data) return;
    if (dst.dtype == src.dtype) {
        CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.bytes(), cudaMemcpyDeviceToDevice, m_stream));
        return;
    }
    launch_convert(dst.data, dst.dtype, src.data, src.dtype, dst.numel(), m_stream);
}

void CudaBackend::do_fill(Tensor dst, float value)
{
    const int64_t n = dst.numel();
    if (n == 0) return;
    if (value == 0.0f && !std::signbit(value)) {
        CRUCIBLE_CUDA_CHECK(cudaMemsetAsync(dst.data, 0, dst.bytes(), m_stream));
        return;
    }
    dispatch_any(dst.dtype, [&](auto tag) {
        using T = decltype(tag);
        T v;
        if constexpr (std::is_same_v<T, bf16>) v = __float2bfloat16_rn(value);
        else if constexpr (std::is_same_v<T, __half>) v = __float2half_rn(value);
        else v = static_cast<T>(value);
        fill_kernel<T><<<blocks_for(n, 256), 256, 0, m_stream>>>(static_cast<T*>(dst.data), v, n);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_add(Tensor out, Tensor a, Tensor b)
{
    const int64_t n = out.numel();
    if (n == 0) return;
    const bool vec = aligned16(out.data) && aligned16(a.data) && aligned16(b.data);
    dispatch_act(out.dtype, "add", [&](auto tag) {
        using T = decltype(tag);
        add_kernel<T><<<blocks_for(n, 256 * 8), 256, 0, m_stream>>>(out.as<T>(), a.as<T>(), b.as<T>(), n, vec);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace crucible

namespace crucible {

void CudaBackend::do_dropout_scale(Tensor out, Tensor in, float scale, float drop_p, uint64_t seed)
{
    const int64_t n = out.numel();
    if (n == 0) return;
    const uint32_t threshold = drop_p == 0.0f ? 0u : dropout_threshold(drop_p);
    const float kept = scale / (1.0f - drop_p);
    dispatch_act(out.dtype, "dropout_scale", [&](auto tag) {
        using T = decltype(tag);
        dropout_scale_kernel<T><<<cuda::blocks_for(n, 256), 256, 0, m_stream>>>(out.as<T>(), in.as<T>(), n, kept,
                                                                                     seed, threshold);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

} // namespace crucible
