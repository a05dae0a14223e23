// Optimizer kernels: the deterministic sum of squares (gradient clipping),
// fused AdamW, and Muon with its batched Newton–Schulz iteration.
//
// AdamW is one pass over the f32 master weights, gradients and moments that
// also writes the compute-dtype mirror of the weights (PyTorch's formulation,
// like the CPU reference).
//
// Muon works on `count` matrices of one shape that sit `stride` elements
// apart (the same projection of every layer). One kernel applies momentum
// (and Nesterov) and writes the update u into packed scratch together with
// per-block partial sums of u²; a second scales each matrix by
// 1/(‖u‖_F + 1e-7) into the Newton–Schulz buffer; the quintic iteration then
// runs as strided-batched cuBLASLt GEMMs over all `count` matrices at once
// (in bf16; in f32 in the parity mode); a last kernel applies decoupled
// weight decay and the update and refreshes the compute mirror. Tall
// matrices are not transposed: the iteration is written for X itself with
// A = XᵀX and X ← aX + X·Bᵀ, the transpose of the wide step.
//
// Every reduction adds in a fixed order, so results are bit-identical from
// run to run on the same GPU.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_common.cuh"

#include <cmath>

namespace crucible {

using namespace cuda;

namespace {

constexpr int kReduceThreads = 256;
constexpr int kSquaresBlocks = 1024;

// ---- sum of squares ---------------------------------------------------------------------------------

__global__ void __launch_bounds__(kReduceThreads)
    sum_squares_partial_kernel(double* __restrict__ partial, const float* __restrict__ x, int64_t n, bool vec)
{
    __shared__ double shared[32];
    double acc = 0.0;
    const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, threads = int64_t(gridDim.x) * blockDim.x;
    if (vec) {
        const int64_t n4 = n / 4;
        for (int64_t i = tid; i < n4; i += threads) {
            const float4 v = reinterpret_cast<const float4*>(x)[i];
            acc += double(v.x) * v.x + double(v.y) * v.y + double(v.z) * v.z + double(v.w) * v.w;
        }
        for (int64_t i = n4 * 4 + tid; i < n; i += threads) acc += double(x[i]) * x[i];
    } else {
        for (int64_t i = tid; i < n; i += threads) acc += double(x[i]) * x[i];
    }
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

__global__ void __launch_bounds__(kReduceThreads)
    sum_partials_kernel(double* __restrict__ out, const double* __restrict__ partial, int count)
{
    __shared__ double shared[32];
    double acc = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) acc += partial[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) *out = acc;
}

// ---- AdamW ----------------------------------------------------------------------------------------------

struct AdamWConsts {
    float beta1, beta2, eps, grad_scale, step_size, inv_sqrt_bias2, decay;
};

template <class C>
__global__ void adamw_kernel(float* __restrict__ p, C* __restrict__ pc, const float* __restrict__ g,
                             float* __restrict__ m, float* __restrict__ v, int64_t n, AdamWConsts k, bool vec)
{
    const int64_t i = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
    if (i >= n) return;
    auto one = [&](float& pi, float gi, float& mi, float& vi) {
        gi *= k.grad_scale;
        mi = k.beta1 * mi + (1.0f - k.beta1) * gi;
        vi = k.beta2 * vi + (1.0f - k.beta2) * gi * gi;
        pi = pi * k.decay - k.step_size * mi / (sqrtf(vi) * k.inv_sqrt_bias2 + k.eps);
    };
    if (vec && i + 4 <= n) {
        float4 pv = *reinterpret_cast<const float4*>(p + i);
        const float4 gv = __ldcs(reinterpret_cast<const float4*>(g + i));
        float4 mv = *reinterpret_cast<const float4*>(m + i);
        float4 vv = *reinterpret_cast<const float4*>(v + i);
        one(pv.x, gv.x, mv.x, vv.x);
        one(pv.y, gv.y, mv.y, vv.y);
        one(pv.z, gv.z, mv.z, vv.z);
        one(pv.w, gv.w, mv.w, vv.w);
        *reinterpret_cast<float4*>(p + i) = pv;
        *reinterpret_cast<float4*>(m + i) = mv;
        *reinterpret_cast<float4*>(v + i) = vv;
        if (pc) {
            pc[i] = from_f<C>(pv.x);
            pc[i + 1] = from_f<C>(pv.y);
            pc[i + 2] = from_f<C>(pv.z);
            pc[i + 3] = from_f<C>(pv.w);
        }
    } else {
        for (int64_t j = i; j < n && j < i + 4; ++j) {
            one(p[j], g[j], m[j], v[j]);
            if (pc) pc[j] = from_f<C>(p[j]);
        }
    }
}

// ---- Muon -------------------------------------------------------------------------------------------------

// grid (P, count): momentum ← μ·momentum + g·scale; u = g + μ·momentum (Nesterov)
// or momentum, packed into u [count, n]; partial[c, block] = Σ u² of the block.
__global__ void __launch_bounds__(kReduceThreads)
    muon_momentum_kernel(float* __restrict__ u, double* __restrict__ partial, const float* __restrict__ grad,
                         float* __restrict__ momentum, int64_t n, int64_t stride, float mu, float grad_scale,
                         bool nesterov)
{
    __shared__ double shared[32];
    const int64_t c = blockIdx.y;
    const float* g = grad + c * stride;
    float* mom = momentum + c * stride;
    float* uc = u + c * n;
    double acc = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float gi = g[i] * grad_scale;
        const float mi = mu * mom[i] + gi;
        mom[i] = mi;
        const float ui = nesterov ? gi + mu * mi : mi;
        uc[i] = ui;
        acc += double(ui) * ui;
    }
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partial[c * gridDim.x + blockIdx.x] = acc;
}

// grid (P, count): partial[c, block] = Σ x² over matrix c (matrices `stride` apart).
__global__ void __launch_bounds__(kReduceThreads)
    matrix_squares_kernel(double* __restrict__ partial, const float* __restrict__ x, int64_t n, int64_t stride)
{
    __shared__ double shared[32];
    const int64_t c = blockIdx.y;
    const float* xc = x + c * stride;
    double acc = 0.0;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        acc += double(xc[i]) * xc[i];
    acc = block_sum(acc, shared);
    if (threadIdx.x == 0) partial[c * gridDim.x + blockIdx.x] = acc;
}

// grid (P, count): x[c] = u[c] / (‖u[c]‖_F + 1e-7), the norm from P partials.
template <class T>
__global__ void muon_normalize_kernel(T* __restrict__ x, const float* __restrict__ u, const double* __restrict__ partial,
                                      int64_t n, int64_t stride, int parts)
{
    const int64_t c = blockIdx.y;
    double ss = 0.0;
    for (int p = 0; p < parts; ++p) ss += partial[c * parts + p];
    const float inv = float(1.0 / (sqrt(ss) + 1e-7));
    const float* uc = u + c * stride;
    T* xc = x + c * n;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
        xc[i] = from_f<T>(uc[i] * inv);
}

// grid (P, count): p ← p·decay − step·o; the compute mirror gets the new p.
template <class T, class C>
__global__ void muon_update_kernel(float* __restrict__ param, C* __restrict__ compute, const T* __restrict__ o,
                                   int64_t n, int64_t stride, float decay, float step)
{
    const int64_t c = blockIdx.y;
    float* p = param + c * stride;
    const T* oc = o + c * n;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float pi = p[i] * decay - step * to_f(oc[i]);
        p[i] = pi;
        if (compute) compute[c * stride + i] = from_f<C>(pi);
    }
}

template <class T>
__global__ void to_f32_kernel(float* __restrict__ out, const T* __restrict__ in, int64_t n)
{
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_f(in[i]);
}

// Blocks per matrix for the Muon kernels: a fixed function of the size.
int parts_for(int64_t n) { return int(std::clamp<int64_t>((n + 8191) / 8192, 1, 128)); }

DType dtype_of(float) { return DType::f32; }
DType dtype_of(bf16) { return DType::bf16; }

// Runs `steps` quintic iterations on the normalised x0 [count, rows, cols]
// (T = bf16 or f32) and returns the buffer holding the result (x0 or x1).
template <class T>
T* newton_schulz_iterations(CudaBackend& be, T* x0, T* x1, T* gram, T* poly, int64_t count, int64_t rows,
                            int64_t cols, int steps)
{
    const DType dt = dtype_of(T{});
    const bool wide = rows <= cols;
    const int64_t k = wide ? rows : cols, n = rows * cols;
    const int batch = int(count);
    T* x = x0;
    T* y = x1;
    for (int s = 0; s < steps; ++s) {
        GemmArgs g;   // A = XXᵀ (wide) or XᵀX (tall)
        g.out = gram;
        g.out_dtype = dt;
        g.ldo = k;
        g.out_batch_stride = k * k;
        g.a = GemmOperand{x, dt, cols, !wide, n};
        g.b = GemmOperand{x, dt, cols, wide, n};
        g.m = k;
        g.n = k;
        g.k = wide ? cols : rows;
        g.batch = batch;
        be.gemm(g);

        GemmArgs p;   // B = c·A·A + b·A
        p.out = poly;
        p.out_dtype = dt;
        p.ldo = k;
        p.out_batch_stride = k * k;
        p.c = gram;
        p.a = GemmOperand{gram, dt, k, false, k * k};
        p.b = GemmOperand{gram, dt, k, false, k * k};
        p.m = k;
        p.n = k;
        p.k = k;
        p.alpha = kMuonC;
        p.beta = kMuonB;
        p.batch = batch;
        be.gemm(p);

        GemmArgs u;   // Y = a·X + B·X (wide) or a·X + X·Bᵀ (tall)
        u.out = y;
        u.out_dtype = dt;
        u.ldo = cols;
        u.out_batch_stride = n;
        u.c = x;
        if (wide) {
            u.a = GemmOperand{poly, dt, k, false, k * k};
            u.b = GemmOperand{x, dt, cols, false, n};
        } else {
            u.a = GemmOperand{x, dt, cols, false, n};
            u.b = GemmOperand{poly, dt, k, true, k * k};
        }
        u.m = rows;
        u.n = cols;
        u.k = k;
        u.beta = kMuonA;
        u.batch = batch;
        be.gemm(u);
        std::swap(x, y);
    }
    return x;
}

} // namespace

double CudaBackend::do_sum_squares(Tensor x)
{
    const int64_t n = x.numel();
    if (n == 0) return 0.0;
    const int blocks = int(std::min<int64_t>(kSquaresBlocks, (n + kReduceThreads * 4 - 1) / (kReduceThreads * 4)));
    ScratchPlan plan;
    const size_t o_part = plan.add(sizeof(double) * size_t(blocks));
    const size_t o_out = plan.add(sizeof(double));
    char* base = static_cast<char*>(scratch(plan.total()));
    auto* partial = reinterpret_cast<double*>(base + o_part);
    auto* out = reinterpret_cast<double*>(base + o_out);
    sum_squares_partial_kernel<<<blocks, kReduceThreads, 0, m_stream>>>(partial, x.as<float>(), n, aligned16(x.data));
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    sum_partials_kernel<<<1, kReduceThreads, 0, m_stream>>>(out, partial, blocks);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    CRUCIBLE_CUDA_CHECK(cudaMemcpyAsync(m_host_result, out, sizeof(double), cudaMemcpyDeviceToHost, m_stream));
    CRUCIBLE_CUDA_CHECK(cudaStreamSynchronize(m_stream));
    return *m_host_result;
}

void CudaBackend::do_adamw_step(Tensor param, Tensor param_compute, Tensor grad, Tensor m, Tensor v, const AdamWHyper& h)
{
    const int64_t n = param.numel();
    if (n == 0) return;
    const bool mirror = !param_compute.empty() && param_compute.data != param.data;
    const double bias1 = 1.0 - std::pow(double(h.beta1), double(h.step));
    const double bias2 = 1.0 - std::pow(double(h.beta2), double(h.step));
    const AdamWConsts k{h.beta1, h.beta2, h.eps, h.grad_scale, float(double(h.lr) / bias1),
                        float(1.0 / std::sqrt(bias2)), 1.0f - h.lr * h.weight_decay};
    const bool vec = aligned16(param.data) && aligned16(grad.data) && aligned16(m.data) && aligned16(v.data);
    const unsigned blocks = blocks_for(n, 256 * 4);
    auto run = [&](auto tag) {
        using C = decltype(tag);
        adamw_kernel<C><<<blocks, 256, 0, m_stream>>>(param.as<float>(), mirror ? param_compute.as<C>() : nullptr,
                                                      grad.as<float>(), m.as<float>(), v.as<float>(), n, k, vec);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    };
    if (mirror) dispatch_float(param_compute.dtype, "adamw compute copy", run);
    else run(float{});
}

void CudaBackend::do_muon_step(Tensor param, Tensor param_compute, Tensor grad, Tensor momentum, int64_t count,
                               int64_t stride, const MuonHyper& h)
{
    const int64_t rows = param.rows(), cols = param.cols(), n = rows * cols;
    CRUCIBLE_REQUIRE(count <= 65535, "muon_step on CUDA takes up to 65535 matrices per call");
    if (n == 0) return;
    const bool mirror = !param_compute.empty() && param_compute.data != param.data;
    const int64_t k = std::min(rows, cols);
    const int parts = parts_for(n);
    const dim3 grid{unsigned(parts), unsigned(count)};
    const size_t elt = m_fp32 ? sizeof(float) : sizeof(bf16);

    ScratchPlan plan;
    const size_t o_u = plan.add(sizeof(float) * size_t(count * n));
    const size_t o_part = plan.add(sizeof(double) * size_t(count * parts));
    const size_t o_x0 = plan.add(elt * size_t(count * n));
    const size_t o_x1 = plan.add(elt * size_t(count * n));
    const size_t o_gram = plan.add(elt * size_t(count * k * k));
    const size_t o_poly = plan.add(elt * size_t(count * k * k));
    char* base = static_cast<char*>(scratch(plan.total()));
    auto* u = reinterpret_cast<float*>(base + o_u);
    auto* partial = reinterpret_cast<double*>(base + o_part);

    muon_momentum_kernel<<<grid, kReduceThreads, 0, m_stream>>>(u, partial, grad.as<float>(), momentum.as<float>(), n,
                                                                stride, h.momentum, h.grad_scale, h.nesterov);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    const float decay = 1.0f - h.lr * h.weight_decay, step = h.lr * h.update_scale;
    auto run = [&](auto tag) {
        using T = decltype(tag);
        T* x0 = reinterpret_cast<T*>(base + o_x0);
        muon_normalize_kernel<T><<<grid, kReduceThreads, 0, m_stream>>>(x0, u, partial, n, n, parts);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        const T* o = newton_schulz_iterations<T>(*this, x0, reinterpret_cast<T*>(base + o_x1),
                                                 reinterpret_cast<T*>(base + o_gram),
                                                 reinterpret_cast<T*>(base + o_poly), count, rows, cols, h.ns_steps);
        auto update = [&](auto ctag) {
            using C = decltype(ctag);
            muon_update_kernel<T, C><<<grid, kReduceThreads, 0, m_stream>>>(
                param.as<float>(), mirror ? param_compute.as<C>() : nullptr, o, n, stride, decay, step);
            CRUCIBLE_CUDA_LAUNCH_CHECK();
        };
        if (mirror) dispatch_float(param_compute.dtype, "muon compute copy", update);
        else update(float{});
    };
    if (m_fp32) run(float{});
    else run(bf16{});
}

void CudaBackend::do_newton_schulz(Tensor out, Tensor in, int steps)
{
    const int64_t cols = in.shape[in.shape.rank - 1], rows = in.shape[in.shape.rank - 2], n = rows * cols;
    if (n == 0) return;
    const int64_t count = in.numel() / n, k = std::min(rows, cols);
    CRUCIBLE_REQUIRE(count <= 65535, "newton_schulz on CUDA takes up to 65535 matrices per call");
    const int parts = parts_for(n);
    const dim3 grid{unsigned(parts), unsigned(count)};
    const size_t elt = m_fp32 ? sizeof(float) : sizeof(bf16);
    ScratchPlan plan;
    const size_t o_part = plan.add(sizeof(double) * size_t(count * parts));
    const size_t o_x0 = plan.add(elt * size_t(count * n));
    const size_t o_x1 = plan.add(elt * size_t(count * n));
    const size_t o_gram = plan.add(elt * size_t(count * k * k));
    const size_t o_poly = plan.add(elt * size_t(count * k * k));
    char* base = static_cast<char*>(scratch(plan.total()));
    auto* partial = reinterpret_cast<double*>(base + o_part);
    matrix_squares_kernel<<<grid, kReduceThreads, 0, m_stream>>>(partial, in.as<float>(), n, n);
    CRUCIBLE_CUDA_LAUNCH_CHECK();
    auto run = [&](auto tag) {
        using T = decltype(tag);
        T* x0 = reinterpret_cast<T*>(base + o_x0);
        muon_normalize_kernel<T><<<grid, kReduceThreads, 0, m_stream>>>(x0, in.as<float>(), partial, n, n, parts);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
        const T* o = newton_schulz_iterations<T>(*this, x0, reinterpret_cast<T*>(base + o_x1),
                                                 reinterpret_cast<T*>(base + o_gram),
                                                 reinterpret_cast<T*>(base + o_poly), count, rows, cols, steps);
        to_f32_kernel<T><<<blocks_for(count * n, 256), 256, 0, m_stream>>>(out.as<float>(), o, count * n);
        CRUCIBLE_CUDA_LAUNCH_CHECK();
    };
    if (m_fp32) run(float{});
    else run(bf16{});
}

} // namespace crucible
