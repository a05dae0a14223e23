// Linear layers: three GEMM orientations through OpenBLAS.
//
// The weight is [out, in] (Hugging Face layout), so the forward is x · Wᵀ, the
// input gradient dout · W and the weight gradient doutᵀ · x, accumulated with
// beta = 1. OpenBLAS threads over M and N only, so each output element sums
// over K in one fixed order: the results are reproducible for a thread count.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

namespace crucible {

void CpuBackend::linear_forward(Tensor out, Tensor in, Tensor weight, bool accumulate)
{
    cpu::expect_f32(out, "linear out");
    cpu::expect_f32(in, "linear in");
    cpu::expect_f32(weight, "linear weight");
    const int64_t m = in.rows(), k = in.cols(), n = weight.rows();
    CRUCIBLE_CHECK(weight.cols() == k, "linear: input " + in.shape.str() + " does not match weight " +
                                           weight.shape.str());
    expect_shape(out, Shape{m, n}, "linear out");
    cpu::use_blas_threads(m_threads);
    cpu::sgemm(false, true, m, n, k, 1.0f, in.as<float>(), k, weight.as<float>(), k, accumulate ? 1.0f : 0.0f,
               out.as<float>(), n);
}

void CpuBackend::linear_backward(Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,
                                 bool accumulate_din)
{
    cpu::expect_f32(dout, "linear dout");
    const int64_t m = dout.rows(), n = dout.cols();
    cpu::use_blas_threads(m_threads);
    if (!din.empty()) {
        cpu::expect_f32(din, "linear din");
        cpu::expect_f32(weight, "linear weight");
        CRUCIBLE_CHECK(weight.rows() == n, "linear: dout " + dout.shape.str() + " does not match weight " +
                                               weight.shape.str());
        const int64_t k = weight.cols();
        expect_shape(din, Shape{m, k}, "linear din");
        cpu::sgemm(false, false, m, k, n, 1.0f, dout.as<float>(), n, weight.as<float>(), k,
                   accumulate_din ? 1.0f : 0.0f, din.as<float>(), k);
    }
    if (!dweight.empty()) {
        cpu::expect_f32(dweight, "linear dweight");
        cpu::expect_f32(in, "linear in");
        const int64_t k = in.cols();
        CRUCIBLE_CHECK(in.rows() == m, "linear: input " + in.shape.str() + " does not match dout " +
                                           dout.shape.str());
        expect_shape(dweight, Shape{n, k}, "linear dweight");
        cpu::sgemm(true, false, n, k, m, 1.0f, dout.as<float>(), n, in.as<float>(), k, 1.0f, dweight.as<float>(),
                   k);
    }
}

} // namespace crucible
