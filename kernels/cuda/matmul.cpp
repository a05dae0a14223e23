// Matrix products through cuBLASLt: Linear forward/backward and the planned
// GEMM that Muon, naive attention and the classifier use.
//
// The engine thinks in row-major matrices; cuBLASLt in column-major. A
// row-major out[M, N] is the column-major outᵀ[N, M], so out = op(a)·op(b) is
// computed as outᵀ = op(b)ᵀ·op(a)ᵀ with the operands swapped. Each distinct
// shape (dtypes, transposes, sizes, strides, batch, alignment) gets a plan
// once: the matmul descriptor, the three layouts and the algorithm the
// heuristic picks for our workspace; later calls only launch.
//
// bf16 operands accumulate in fp32 (CUBLAS_COMPUTE_32F); f32 operands use
// CUBLAS_COMPUTE_32F too, which never rounds to TF32, so the parity mode is
// exact fp32. Weight gradients are f32 outputs of bf16 products with beta = 1:
// micro-batches accumulate in full precision inside the GEMM epilogue.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"

#include <algorithm>
#include <cstdio>

namespace crucible {

namespace {

#define CRUCIBLE_CUBLAS_CHECK(expr)                                                               \
    do {                                                                                          \
        const cublasStatus_t crucible_st_ = (expr);                                               \
        if (crucible_st_ != CUBLAS_STATUS_SUCCESS)                                                \
            throw_error(__FILE__, __LINE__,                                                        \
                        std::string("cuBLAS error ") + cublasGetStatusString(crucible_st_) + " (in " #expr ")"); \
    } while (0)

cudaDataType_t cuda_type(DType t)
{
    switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: break;
    }
    throw_error(__FILE__, __LINE__, std::string("matmul: unsupported dtype ") + dtype_name(t));
}

// Largest power of two (≤ 16) dividing every byte address and stride given.
int common_alignment(std::initializer_list<uint64_t> values)
{
    int a = 16;
    for (uint64_t v : values)
        while (a > 1 && (v % uint64_t(a)) != 0) a /= 2;
    return a;
}

std::string describe(const GemmArgs& g)
{
    char buf[160];
    std::snprintf(buf, sizeof buf, "[%lldx%lld]*[%lldx%lld] %s to %s, batch %d", (long long)g.m, (long long)g.k,
                  (long long)g.k, (long long)g.n, dtype_name(g.a.dtype), dtype_name(g.out_dtype), g.batch);
    return buf;
}

} // namespace

CudaBackend::GemmPlan& CudaBackend::gemm_plan(const GemmKey& key, const GemmArgs& g, int alignment)
{
    auto it = m_gemm_plans.find(key);
    if (it != m_gemm_plans.end()) return it->second;

    GemmPlan p;
    // Column-major view: A' = b, B' = a, m' = N, n' = M, k' = K.
    const cublasOperation_t ta = g.b.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t tb = g.a.trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    const uint64_t a_rows = ta == CUBLAS_OP_N ? uint64_t(g.n) : uint64_t(g.k);
    const uint64_t a_cols = ta == CUBLAS_OP_N ? uint64_t(g.k) : uint64_t(g.n);
    const uint64_t b_rows = tb == CUBLAS_OP_N ? uint64_t(g.k) : uint64_t(g.m);
    const uint64_t b_cols = tb == CUBLAS_OP_N ? uint64_t(g.m) : uint64_t(g.k);
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, cuda_type(g.b.dtype), a_rows, a_cols, g.b.ld));
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, cuda_type(g.a.dtype), b_rows, b_cols, g.a.ld));
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, cuda_type(g.out_dtype), uint64_t(g.n), uint64_t(g.m), g.ldo));
    if (g.batch > 1) {
        const int32_t batch = g.batch;
        const int64_t sa = g.b.batch_stride, sb = g.a.batch_stride, sc = g.out_batch_stride;
        for (auto [layout, stride] : {std::pair{p.a, sa}, std::pair{p.b, sb}, std::pair{p.c, sc}}) {
            CRUCIBLE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                                   sizeof batch));
            CRUCIBLE_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
                layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
        }
    }

    cublasLtMatmulPreference_t pref = nullptr;
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    const uint64_t ws = m_lt_workspace_bytes;
    const uint32_t align = uint32_t(alignment);
    CRUCIBLE_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    for (auto attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
        CRUCIBLE_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &align, sizeof align));
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(m_lt, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
        cublasLtMatmulDescDestroy(p.desc);
        cublasLtMatrixLayoutDestroy(p.a);
        cublasLtMatrixLayoutDestroy(p.b);
        cublasLtMatrixLayoutDestroy(p.c);
        throw_error(__FILE__, __LINE__, "cuBLASLt has no algorithm for the matmul " + describe(g) + " (" +
                                            cublasGetStatusString(st) + ")");
    }
    p.algo = result.algo;
    return m_gemm_plans.emplace(key, p).first->second;
}

void CudaBackend::gemm(const GemmArgs& g)
{
    if (g.m == 0 || g.n == 0 || (g.k == 0 && g.beta == 1.0f)) return;
    CRUCIBLE_CHECK(g.k > 0, "matmul with an empty inner dimension");
    const void* c = g.c ? g.c : g.out;
    const uint64_t ea = dtype_bytes(g.a.dtype, 1), eb = dtype_bytes(g.b.dtype, 1), eo = dtype_bytes(g.out_dtype, 1);
    const int alignment = common_alignment(
        {uint64_t(reinterpret_cast<uintptr_t>(g.a.ptr)), uint64_t(reinterpret_cast<uintptr_t>(g.b.ptr)),
         uint64_t(reinterpret_cast<uintptr_t>(g.out)), uint64_t(reinterpret_cast<uintptr_t>(c)),
         uint64_t(g.a.ld) * ea, uint64_t(g.b.ld) * eb, uint64_t(g.ldo) * eo,
         uint64_t(g.a.batch_stride) * ea, uint64_t(g.b.batch_stride) * eb, uint64_t(g.out_batch_stride) * eo});
    const GemmKey key{int64_t(g.out_dtype), int64_t(g.a.dtype), int64_t(g.b.dtype), g.a.trans, g.b.trans,
                      g.m, g.n, g.k, g.a.ld, g.b.ld, g.ldo, g.batch,
                      g.batch > 1 ? g.a.batch_stride : 0, g.batch > 1 ? g.b.batch_stride : 0,
                      g.batch > 1 ? g.out_batch_stride : 0, alignment, 0, 0, 0, 0};
    GemmPlan& p = gemm_plan(key, g, alignment);
    CRUCIBLE_CUBLAS_CHECK(cublasLtMatmul(m_lt, p.desc, &g.alpha, g.b.ptr, p.a, g.a.ptr, p.b, &g.beta, c, p.c, g.out,
                                         p.c, &p.algo, m_lt_workspace, m_lt_workspace_bytes, m_stream));
}

// ---- Linear ----------------------------------------------------------------------------------

void CudaBackend::do_linear_forward(Tensor out, Tensor in, Tensor weight, bool accumulate)
{
    const int64_t m = in.rows(), k = in.cols(), n = weight.rows();
    if (m > 0 && n > 0 && linear_forward_few_rows(out, in, weight, accumulate)) return;
    GemmArgs g;
    g.out = out.data;
    g.out_dtype = out.dtype;
    g.ldo = n;
    g.a = GemmOperand{in.data, in.dtype, k, false, 0};
    g.b = GemmOperand{weight.data, weight.dtype, k, true, 0};
    g.m = m;
    g.n = n;
    g.k = k;
    g.beta = accumulate ? 1.0f : 0.0f;
    gemm(g);
}

void CudaBackend::do_linear_backward(Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,
                                     bool accumulate_din)
{
    const int64_t m = dout.rows(), n = dout.cols();
    if (!din.empty()) {
        const int64_t k = weight.cols();
        GemmArgs g;
        g.out = din.data;
        g.out_dtype = din.dtype;
        g.ldo = k;
        g.a = GemmOperand{dout.data, dout.dtype, n, false, 0};
        g.b = GemmOperand{weight.data, weight.dtype, k, false, 0};
        g.m = m;
        g.n = k;
        g.k = n;
        g.beta = accumulate_din ? 1.0f : 0.0f;
        gemm(g);
    }
    if (!dweight.empty()) {
        const int64_t k = in.cols();
        GemmArgs g;
        g.out = dweight.data;
        g.out_dtype = dweight.dtype;
        g.ldo = k;
        g.a = GemmOperand{dout.data, dout.dtype, n, true, 0};
        g.b = GemmOperand{in.data, in.dtype, k, false, 0};
        g.m = n;
        g.n = k;
        g.k = m;
        g.beta = 1.0f;
        gemm(g);
    }
}

} // namespace crucible
