// Muon: momentum, Newton–Schulz orthogonalisation, and the update.
//
// Newton–Schulz runs the quintic X ← aX + (bA + cA²)X with A = XXᵀ on
// X / (‖X‖_F + 1e-7), coefficients (kMuonA, kMuonB, kMuonC). For a tall matrix
// the iteration must run on the wide orientation Xᵀ; rather than transposing,
// the same step is written for X itself: with A = XᵀX it reads
// X ← aX + X(bA + cA²)ᵀ, which is exactly the transpose of the wide step.
// The Gram matrix is taken on the smaller side; every product is a
// parallel_sgemm, and the matrices of a batch run one after another.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <cstring>
#include <utility>

namespace crucible {

namespace {

struct NewtonSchulzScratch {
    float* x;      // [rows·cols]
    float* y;      // [rows·cols]
    float* gram;   // [k·k], k = min(rows, cols)
    float* poly;   // [k·k]

    static size_t floats(int64_t rows, int64_t cols)
    {
        const int64_t k = std::min(rows, cols);
        return size_t(2 * rows * cols + 2 * k * k);
    }
    NewtonSchulzScratch(float* base, int64_t rows, int64_t cols)
    {
        const int64_t k = std::min(rows, cols);
        x = base;
        y = x + rows * cols;
        gram = y + rows * cols;
        poly = gram + k * k;
    }
};

// Orthogonalises s.x [rows, cols] in place (the result may end in s.y: the
// returned pointer says where).
float* newton_schulz_matrix(NewtonSchulzScratch s, int64_t rows, int64_t cols, int steps, int threads)
{
    const int64_t n = rows * cols;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < n; ++i) sum_sq += double(s.x[i]) * double(s.x[i]);
    const float inv_norm = float(1.0 / (std::sqrt(sum_sq) + 1e-7));
    for (int64_t i = 0; i < n; ++i) s.x[i] *= inv_norm;

    const bool wide = rows <= cols;
    const int64_t k = wide ? rows : cols;
    float* x = s.x;
    float* y = s.y;
    for (int step = 0; step < steps; ++step) {
        // A = XXᵀ (wide) or XᵀX (tall)
        if (wide) cpu::parallel_sgemm(threads, false, true, k, k, cols, 1.0f, x, cols, x, cols, 0.0f, s.gram, k);
        else cpu::parallel_sgemm(threads, true, false, k, k, rows, 1.0f, x, cols, x, cols, 0.0f, s.gram, k);
        // B = b·A + c·A·A
        std::memcpy(s.poly, s.gram, size_t(k * k) * sizeof(float));
        cpu::parallel_sgemm(threads, false, false, k, k, k, kMuonC, s.gram, k, s.gram, k, kMuonB, s.poly, k);
        // Y = a·X + B·X (wide) or a·X + X·Bᵀ (tall)
        std::memcpy(y, x, size_t(n) * sizeof(float));
        if (wide)
            cpu::parallel_sgemm(threads, false, false, rows, cols, rows, 1.0f, s.poly, k, x, cols, kMuonA, y, cols);
        else
            cpu::parallel_sgemm(threads, false, true, rows, cols, cols, 1.0f, x, cols, s.poly, k, kMuonA, y, cols);
        std::swap(x, y);
    }
    return x;
}

} // namespace

void CpuBackend::do_newton_schulz(Tensor out, Tensor in, int steps)
{
    const int64_t cols = in.shape[in.shape.rank - 1], rows = in.shape[in.shape.rank - 2];
    const int64_t count = rows * cols == 0 ? 0 : in.numel() / (rows * cols);
    cpu::use_blas_threads(m_threads);
    NewtonSchulzScratch s(scratch(NewtonSchulzScratch::floats(rows, cols)), rows, cols);
    for (int64_t c = 0; c < count; ++c) {
        std::memcpy(s.x, in.as<float>() + c * rows * cols, size_t(rows * cols) * sizeof(float));
        const float* result = newton_schulz_matrix(s, rows, cols, steps, m_threads);
        std::memcpy(out.as<float>() + c * rows * cols, result, size_t(rows * cols) * sizeof(float));
    }
}

void CpuBackend::do_muon_step(Tensor param, Tensor param_compute, Tensor grad, Tensor momentum, int64_t count,
                              int64_t stride, const MuonHyper& h)
{
    const int64_t rows = param.rows(), cols = param.cols(), n = rows * cols;
    void* compute = nullptr;
    DType compute_dtype = DType::f32;
    if (!param_compute.empty() && param_compute.data != param.data) {
        compute = param_compute.data;
        compute_dtype = param_compute.dtype;
    }

    cpu::use_blas_threads(m_threads);
    NewtonSchulzScratch s(scratch(NewtonSchulzScratch::floats(rows, cols)), rows, cols);
    const float mu = h.momentum, grad_scale = h.grad_scale;
    const float decay = 1.0f - h.lr * h.weight_decay;
    const float step = h.lr * h.update_scale;
    const bool nesterov = h.nesterov;
    for (int64_t c = 0; c < count; ++c) {
        float* p = param.as<float>() + c * stride;
        const float* g = grad.as<float>() + c * stride;
        float* mom = momentum.as<float>() + c * stride;
        float* u = s.x;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork)
        for (int64_t i = 0; i < n; ++i) {
            const float gi = g[i] * grad_scale;
            const float mi = mu * mom[i] + gi;
            mom[i] = mi;
            u[i] = nesterov ? gi + mu * mi : mi;
        }
        const float* ortho = newton_schulz_matrix(s, rows, cols, h.ns_steps, m_threads);
        const int64_t offset = c * stride;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork)
        for (int64_t i = 0; i < n; ++i) {
            const float pi = p[i] * decay - step * ortho[i];
            p[i] = pi;
            if (compute) cpu::store_compute(compute, compute_dtype, offset + i, pi);
        }
    }
}

} // namespace crucible
