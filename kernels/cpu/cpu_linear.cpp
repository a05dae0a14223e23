// Linear layers: three GEMM orientations through OpenBLAS.
//
// The weight is [out, in] (Hugging Face layout), so the forward is x · Wᵀ, the
// input gradient dout · W and the weight gradient doutᵀ · x, accumulated with
// beta = 1. parallel_sgemm (defined here, shared with the other op files)
// splits C between the threads, never K, so each output element sums over K
// in one fixed order: the results are reproducible for a thread count.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <omp.h>

namespace crucible {

namespace {
constexpr int64_t kGemvMaxRows = 4;   // up to this many input rows, one GEMV per row
} // namespace

namespace cpu {

void parallel_sgemm(int threads, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc)
{
    // Below ~4 MFLOP a slice would not pay for waking the threads.
    constexpr double kSplitMinFlops = 4e6;
    constexpr int64_t kSliceUnit = 16;   // slices start on whole register tiles
    const bool split_rows = m >= n;
    const int64_t units = ((split_rows ? m : n) + kSliceUnit - 1) / kSliceUnit;
    const int parts = int(std::min<int64_t>(threads, units));
    if (parts <= 1 || 2.0 * double(m) * double(n) * double(k) < kSplitMinFlops) {
        sgemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    for (int64_t v : {m, n, k, lda, ldb, ldc}) blas_int(v, "a GEMM dimension");   // throw here, not in the team
#pragma omp parallel num_threads(parts)
    {
        const Range slice = split_range(units, omp_get_num_threads(), omp_get_thread_num());
        const int64_t extent = split_rows ? m : n;
        const int64_t begin = std::min(extent, slice.begin * kSliceUnit);
        const int64_t end = std::min(extent, slice.end * kSliceUnit);
        if (end > begin) {
            if (split_rows)   // rows of op(A) and C
                sgemm(trans_a, trans_b, end - begin, n, k, alpha, trans_a ? a + begin : a + begin * lda, lda, b, ldb,
                      beta, c + begin * ldc, ldc);
            else              // columns of op(B) and C
                sgemm(trans_a, trans_b, m, end - begin, k, alpha, a, lda, trans_b ? b + begin * ldb : b + begin,
                      ldb, beta, c + begin, ldc);
        }
    }
}

} // namespace cpu

void CpuBackend::do_linear_forward(Tensor out, Tensor in, Tensor weight, bool accumulate)
{
    const int64_t m = in.rows(), k = in.cols(), n = weight.rows();
    cpu::use_blas_threads(m_threads);
    if (m <= kGemvMaxRows) {
        // Decode steps multiply one row (or a few) by the weight: sgemm would
        // pack the whole weight on every call, and OpenBLAS's own threads
        // cost more to wake than a small product takes. Each output feature
        // is one dot product over a weight row, streamed once; our threads
        // take slices of the features when there is enough work.
        const float* w = weight.as<float>();
        const float* x = in.as<float>();
        float* y = out.as<float>();
        const bool parallel = 2.0 * double(m) * double(n) * double(k) >= 1e6 && m_threads > 1;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (parallel)
        for (int64_t j = 0; j < n; ++j)
            for (int64_t r = 0; r < m; ++r) {
                const float v = cpu::dot(w + j * k, x + r * k, k);
                y[r * n + j] = accumulate ? y[r * n + j] + v : v;
            }
        return;
    }
    cpu::parallel_sgemm(m_threads, false, true, m, n, k, 1.0f, in.as<float>(), k, weight.as<float>(), k,
                        accumulate ? 1.0f : 0.0f, out.as<float>(), n);
}

void CpuBackend::do_linear_backward(Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,
                                    bool accumulate_din)
{
    const int64_t m = dout.rows(), n = dout.cols();
    cpu::use_blas_threads(m_threads);
    if (!din.empty()) {
        const int64_t k = weight.cols();
        cpu::parallel_sgemm(m_threads, false, false, m, k, n, 1.0f, dout.as<float>(), n, weight.as<float>(), k,
                            accumulate_din ? 1.0f : 0.0f, din.as<float>(), k);
    }
    if (!dweight.empty()) {
        const int64_t k = in.cols();
        cpu::parallel_sgemm(m_threads, true, false, n, k, m, 1.0f, dout.as<float>(), n, in.as<float>(), k, 1.0f,
                            dweight.as<float>(), k);
    }
}

} // namespace crucible
