// MLP activations: SwiGLU (silu(gate)·up over the packed [gate | up] rows) and
// exact erf GELU, forward and backward, one row per iteration of a static
// OpenMP loop. The sigmoid goes through the vectorised exp. GELU writes
// Φ(x) = erfc(−x/√2)/2 rather than (1 + erf(x/√2))/2: the same value without
// the cancellation that costs relative accuracy for negative x.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

namespace crucible {

void CpuBackend::do_swiglu_forward(Tensor out, Tensor gate_up)
{
    const int64_t rows = gate_up.rows(), f = gate_up.cols() / 2;
    float* o = out.as<float>();
    const float* x = gate_up.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (rows * f > cpu::kParallelMinWork)
    for (int64_t r = 0; r < rows; ++r) {
        const float* gate = x + r * 2 * f;
        const float* up = gate + f;
        float* orow = o + r * f;
        for (int64_t i = 0; i < f; ++i) orow[i] = gate[i] / (1.0f + cpu::exp_approx(-gate[i])) * up[i];
    }
}

void CpuBackend::do_swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up)
{
    const int64_t rows = gate_up.rows(), f = gate_up.cols() / 2;
    float* dx = dgate_up.as<float>();
    const float* dy = dout.as<float>();
    const float* x = gate_up.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (rows * f > cpu::kParallelMinWork)
    for (int64_t r = 0; r < rows; ++r) {
        const float* gate = x + r * 2 * f;
        const float* up = gate + f;
        const float* g = dy + r * f;
        float* dgate = dx + r * 2 * f;
        float* dup = dgate + f;
        for (int64_t i = 0; i < f; ++i) {
            // silu(z) = z·σ(z), silu'(z) = σ(z)·(1 + z·(1 − σ(z))).
            const float z = gate[i], u = up[i], dyi = g[i];
            const float sig = 1.0f / (1.0f + cpu::exp_approx(-z));
            dgate[i] = dyi * u * sig * (1.0f + z * (1.0f - sig));
            dup[i] = dyi * z * sig;
        }
    }
}

void CpuBackend::do_gelu_forward(Tensor out, Tensor in)
{
    const int64_t n = in.numel();
    float* o = out.as<float>();
    const float* x = in.as<float>();
    constexpr float kInvSqrt2 = 0.70710678118654752f;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork)
    for (int64_t i = 0; i < n; ++i) o[i] = 0.5f * x[i] * std::erfc(-x[i] * kInvSqrt2);
}

void CpuBackend::do_gelu_backward(Tensor din, Tensor dout, Tensor in)
{
    const int64_t n = in.numel();
    float* dx = din.as<float>();
    const float* dy = dout.as<float>();
    const float* x = in.as<float>();
    constexpr float kInvSqrt2 = 0.70710678118654752f;
    constexpr float kInvSqrt2Pi = 0.39894228040143268f;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n > cpu::kParallelMinWork)
    for (int64_t i = 0; i < n; ++i) {
        // d/dx [x·Φ(x)] = Φ(x) + x·φ(x)
        const float cdf = 0.5f * std::erfc(-x[i] * kInvSqrt2);
        const float pdf = kInvSqrt2Pi * cpu::exp_approx(-0.5f * x[i] * x[i]);
        dx[i] = dy[i] * (cdf + x[i] * pdf);
    }
}

} // namespace crucible
