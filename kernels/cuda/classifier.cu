// Softmax cross-entropy and the fused classifier head.
//
// softmax_cross_entropy: one block per row. The first sweep keeps a running
// (max, Σexp) pair per thread (online softmax) and the first index of the
// maximum, combined across the block in a fixed order; the second sweep
// writes (softmax − onehot)·grad_scale over the logits in place. A row is
// 64 KB at V = 32768 and a few rows are in flight per SM, so the second
// sweep mostly reads from L2. (Holding the row in registers instead was
// measured slower: the registers it takes leave one row in flight per SM.)
//
// classifier: logits = x·Wᵀ, cross-entropy and the backward, in chunks of
// rows sized so that one chunk's logits take about 256 MB (4096 rows at
// V = 32768 in bf16): the logits exist once per chunk, in the compute dtype,
// and are overwritten by their gradient before the two backward GEMMs read
// them (dx = dlogits·W, dW += dlogitsᵀ·x in f32).
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

namespace crucible {

using namespace cuda;

namespace {

constexpr int kCeThreads = 512;
constexpr size_t kClassifierChunkBytes = size_t(256) << 20;

template <class T> __device__ __forceinline__ float ce_exp(float x)
{
    if constexpr (std::is_same_v<T, float>) return expf(x);
    else return __expf(x);
}

struct MaxSum {
    float m;
    float s;
};

__device__ __forceinline__ MaxSum combine(MaxSum a, MaxSum b)
{
    if (a.m == -INFINITY) return b;
    if (b.m == -INFINITY) return a;
    const float m = fmaxf(a.m, b.m);
    return MaxSum{m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

template <class T, bool VEC>
__global__ void __launch_bounds__(kCeThreads)
    cross_entropy_kernel(float* __restrict__ losses, void* correct, bool correct_is_f32, T* logits,
                         const int32_t* __restrict__ targets, int64_t V, float grad_scale, bool compute_grad)
{
    __shared__ float s_m[32], s_s[32];
    __shared__ int64_t s_i[32];
    const int64_t row = blockIdx.x;
    T* x = logits + row * V;
    const int32_t target = targets[row];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    if (target < 0) {
        if (tid == 0) {
            losses[row] = 0.0f;
            if (correct) {
                if (correct_is_f32) static_cast<float*>(correct)[row] = 0.0f;
                else static_cast<int32_t*>(correct)[row] = 0;
            }
        }
        if (compute_grad)
            for (int64_t c = tid; c < V; c += blockDim.x) x[c] = from_f<T>(0.0f);
        return;
    }

    // Sweep 1: running max / sum and the first index of the max.
    MaxSum ms{-INFINITY, 0.0f};
    int64_t best = V;
    auto visit = [&](float v, int64_t c) {
        if (v > ms.m) {
            ms.s = ms.s * ce_exp<T>(ms.m - v) + 1.0f;
            ms.m = v;
            best = c;
        } else {
            ms.s += ce_exp<T>(v - ms.m);
            if (v == ms.m && c < best) best = c;
        }
    };
    if constexpr (VEC) {
        for (int64_t c0 = int64_t(tid) * 8; c0 < V; c0 += int64_t(blockDim.x) * 8) {
            float v[8];
            load8(v, x + c0);
#pragma unroll
            for (int k = 0; k < 8; ++k) visit(v[k], c0 + k);
        }
    } else {
        for (int64_t c = tid; c < V; c += blockDim.x) visit(to_f(x[c]), c);
    }
    // Combine within the warp, then across warps, in a fixed order.
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const MaxSum other{__shfl_xor_sync(0xffffffffu, ms.m, o), __shfl_xor_sync(0xffffffffu, ms.s, o)};
        const int64_t other_best = __shfl_xor_sync(0xffffffffu, best, o);
        if (other.m > ms.m || (other.m == ms.m && other_best < best)) best = other_best;
        ms = combine(ms, other);
    }
    if (lane == 0) {
        s_m[warp] = ms.m;
        s_s[warp] = ms.s;
        s_i[warp] = best;
    }
    __syncthreads();
    MaxSum total{-INFINITY, 0.0f};
    int64_t argmax = V;
    const int warps = blockDim.x / 32;
    for (int w = 0; w < warps; ++w) {
        const MaxSum other{s_m[w], s_s[w]};
        if (other.m > total.m || (other.m == total.m && s_i[w] < argmax)) argmax = s_i[w];
        total = combine(total, other);
    }
    const float lse = total.m + logf(total.s);
    if (tid == 0) {
        losses[row] = lse - to_f(x[target]);
        if (correct) {
            if (correct_is_f32) static_cast<float*>(correct)[row] = argmax == target ? 1.0f : 0.0f;
            else static_cast<int32_t*>(correct)[row] = argmax == target ? 1 : 0;
        }
    }
    if (!compute_grad) return;
    __syncthreads();   // everyone has read x[target] before it is overwritten

    // Sweep 2: the gradient, in place.
    const float inv = 1.0f / total.s;
    if constexpr (VEC) {
        for (int64_t c0 = int64_t(tid) * 8; c0 < V; c0 += int64_t(blockDim.x) * 8) {
            float v[8];
            load8(v, x + c0);
#pragma unroll
            for (int k = 0; k < 8; ++k)
                v[k] = (ce_exp<T>(v[k] - total.m) * inv - (c0 + k == target ? 1.0f : 0.0f)) * grad_scale;
            store8(x + c0, v);
        }
    } else {
        for (int64_t c = tid; c < V; c += blockDim.x) {
            const float v = to_f(x[c]);
            x[c] = from_f<T>((ce_exp<T>(v - total.m) * inv - (c == target ? 1.0f : 0.0f)) * grad_scale);
        }
    }
}

} // namespace

void CudaBackend::do_softmax_cross_entropy(Tensor losses, Tensor correct, Tensor logits, Tensor targets,
                                           float grad_scale, bool compute_grad)
{
    const int64_t rows = logits.rows(), V = logits.cols();
    if (rows == 0) return;
    CRUCIBLE_REQUIRE(rows <= INT32_MAX, "softmax_cross_entropy on CUDA takes up to 2^31 - 1 rows in one call");
    dispatch_act(logits.dtype, "softmax_cross_entropy", [&](auto tag) {
        using T = decltype(tag);
        const bool vec = V % 8 == 0 && aligned16(logits.data);
        const int threads = V >= 8 * kCeThreads ? kCeThreads : 128;
        auto k = vec ? cross_entropy_kernel<T, true> : cross_entropy_kernel<T, false>;
        k<<<unsigned(rows), threads, 0, m_stream>>>(losses.as<float>(), correct.data, correct.dtype == DType::f32,
                                                    logits.as<T>(), targets.as<int32_t>(), V, grad_scale,
                                                    compute_grad);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    });
}

void CudaBackend::do_classifier(Tensor losses, Tensor correct, Tensor dx, Tensor dweight, Tensor x, Tensor weight,
                                Tensor targets, float grad_scale)
{
    const int64_t n = x.rows(), V = weight.rows();
    const bool backward = !dx.empty() || !dweight.empty();
    if (n == 0) return;
    const DType dt = compute_dtype();
    const size_t row_bytes = dtype_bytes(dt, V);
    const int64_t chunk = std::clamp<int64_t>(int64_t(kClassifierChunkBytes / row_bytes), 64, n);
    void* logits_mem = scratch(row_bytes * size_t(chunk));
    for (int64_t begin = 0; begin < n; begin += chunk) {
        const int64_t end = std::min(n, begin + chunk);
        Tensor logits(logits_mem, dt, Shape{end - begin, V}, DeviceKind::cuda);
        const Tensor xs = x.slice_rows(begin, end);
        linear_forward(logits, xs, weight, false);
        softmax_cross_entropy(losses.slice_rows(begin, end),
                              correct.empty() ? Tensor() : correct.slice_rows(begin, end), logits,
                              targets.slice_rows(begin, end), grad_scale, backward);
        if (backward)
            linear_backward(dx.empty() ? Tensor() : dx.slice_rows(begin, end), dweight, logits, xs, weight, false);
    }
}

} // namespace crucible
