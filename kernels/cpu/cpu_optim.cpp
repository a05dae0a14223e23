// Reductions and the AdamW update.
//
// sum_squares splits the tensor into fixed chunks of kSquaresChunk elements,
// sums each in double (eight independent lanes so the loop vectorises) and
// adds the chunk sums in chunk order: the result is the same for any thread
// count, which gradient clipping relies on for bit-exact resumes.
//
// AdamW follows PyTorch's formulation so that parity tests agree to rounding:
// p ← p·(1 − lr·wd); p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε).
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

namespace crucible {

namespace {

constexpr int64_t kSquaresChunk = 1 << 14;
constexpr int64_t kAdamBlock = 512;

double chunk_sum_squares(const float* x, int64_t n)
{
    constexpr int kDoubleLanes = 8;
    double acc[kDoubleLanes] = {};
    int64_t i = 0;
    for (; i + kDoubleLanes <= n; i += kDoubleLanes)
        for (int l = 0; l < kDoubleLanes; ++l) acc[l] += double(x[i + l]) * double(x[i + l]);
    double tail = 0.0;
    for (; i < n; ++i) tail += double(x[i]) * double(x[i]);
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7])) + tail;
}

} // namespace

double CpuBackend::do_sum_squares(Tensor x)
{
    const int64_t n = x.numel();
    if (n == 0) return 0.0;
    const int64_t chunks = (n + kSquaresChunk - 1) / kSquaresChunk;
    auto* partials = reinterpret_cast<double*>(scratch(size_t(chunks) * 2));
    const float* p = x.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
        const int64_t begin = c * kSquaresChunk;
        partials[c] = chunk_sum_squares(p + begin, std::min(kSquaresChunk, n - begin));
    }
    double total = 0.0;
    for (int64_t c = 0; c < chunks; ++c) total += partials[c];
    return total;
}

void CpuBackend::do_adamw_step(Tensor param, Tensor param_compute, Tensor grad, Tensor m, Tensor v,
                               const AdamWHyper& h)
{
    const int64_t n = param.numel();
    void* compute = nullptr;
    DType compute_dtype = DType::f32;
    if (!param_compute.empty() && param_compute.data != param.data) {
        compute = param_compute.data;
        compute_dtype = param_compute.dtype;
    }

    const double bias1 = 1.0 - std::pow(double(h.beta1), double(h.step));
    const double bias2 = 1.0 - std::pow(double(h.beta2), double(h.step));
    const float step_size = float(double(h.lr) / bias1);
    const float inv_sqrt_bias2 = float(1.0 / std::sqrt(bias2));
    const float decay = 1.0f - h.lr * h.weight_decay;
    const float beta1 = h.beta1, beta2 = h.beta2, eps = h.eps, grad_scale = h.grad_scale;
    float* p = param.as<float>();
    const float* g = grad.as<float>();
    float* m1 = m.as<float>();
    float* m2 = v.as<float>();
    // Blocks of kAdamBlock elements in three passes: moments (vectorised), √v
    // (scalar: without -fno-math-errno GCC will not vectorise sqrt, so it gets
    // a tight loop of its own), then the weights (vectorised).
    const int64_t blocks = (n + kAdamBlock - 1) / kAdamBlock;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        const int64_t begin = blk * kAdamBlock, count = std::min(kAdamBlock, n - begin);
        float root[kAdamBlock];
        float* pb = p + begin;
        const float* gb = g + begin;
        float* mb = m1 + begin;
        float* vb = m2 + begin;
        for (int64_t i = 0; i < count; ++i) {
            const float gi = gb[i] * grad_scale;
            mb[i] = beta1 * mb[i] + (1.0f - beta1) * gi;
            vb[i] = beta2 * vb[i] + (1.0f - beta2) * gi * gi;
        }
        for (int64_t i = 0; i < count; ++i) root[i] = std::sqrt(vb[i]);
        for (int64_t i = 0; i < count; ++i)
            pb[i] = pb[i] * decay - step_size * mb[i] / (root[i] * inv_sqrt_bias2 + eps);
        if (compute)
            for (int64_t i = 0; i < count; ++i) cpu::store_compute(compute, compute_dtype, begin + i, pb[i]);
    }
}

} // namespace crucible
