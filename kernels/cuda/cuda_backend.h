// CudaBackend: the GPU implementation of Backend.
//
// bf16 activations and compute weights, fp32 accumulation everywhere, fp32
// master weights, gradients and optimizer state (compute_dtype() is f32 in the
// parity mode, BackendOptions::cuda_fp32). One backend owns one stream, one
// cuBLASLt handle with its workspace, a cache of matmul plans (descriptor,
// layouts and the heuristic's algorithm per shape) and a scratch buffer grown
// on demand, so a training step performs no allocations and no host syncs
// except where an op returns a value to the host.
//
// The implementations of Backend's hooks arrive with checked arguments (they
// check only this backend's own limits) and live one file per op family:
// matmul.cpp, norms.cu, rope.cu, mlp.cu, embedding.cu, classifier.cu,
// optimizers.cu, attention*.cu, convert.cu (transfers and add), and for
// generation cuda_kv_cache.cu, cuda_decode_attention.cu, cuda_argmax.cu,
// decode_linear.cu (the fused decode ops) and cuda_graphs_and_generation.cpp;
// this header is the class they all implement.
#pragma once

#include "kernels/backend.h"
#include "kernels/backend_factory.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>

namespace crucible {

// One operand of a row-major GEMM: `trans` means the stored matrix is the
// transpose of the operand (a row-major [K, M] matrix used as op(a) [M, K]).
struct GemmOperand {
    const void* ptr = nullptr;
    DType dtype = DType::bf16;
    int64_t ld = 0;            // row stride of the stored matrix, in elements
    bool trans = false;
    int64_t batch_stride = 0;  // elements between consecutive matrices of a batch
};

// out[M, N] = alpha · op(a)[M, K] · op(b)[K, N] + beta · c, row-major, for
// `batch` matrices at the given strides; c is `out` unless given (same layout).
struct GemmArgs {
    void* out = nullptr;
    DType out_dtype = DType::bf16;
    int64_t ldo = 0;
    int64_t out_batch_stride = 0;
    const void* c = nullptr;
    GemmOperand a, b;
    int64_t m = 0, n = 0, k = 0;
    float alpha = 1.0f, beta = 0.0f;
    int batch = 1;
};

// Offsets into one scratch allocation, planned before it is taken.
class ScratchPlan {
public:
    size_t add(size_t bytes)
    {
        const size_t at = (m_total + 255) / 256 * 256;
        m_total = at + bytes;
        return at;
    }
    size_t total() const { return m_total; }

private:
    size_t m_total = 0;
};

// Whether flash attention's Hopper forward serves this device, in words (a
// DeviceFacts detail, "hopper attention").
std::string hopper_attention_detail(const cudaDeviceProp& props);

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(const BackendOptions& options);
    ~CudaBackend() override;

    // ---- used by the op files ---------------------------------------------------------
    cudaStream_t stream() const { return m_stream; }
    int device_ordinal() const { return m_device; }
    const cudaDeviceProp& props() const { return m_props; }
    int sm_count() const { return m_props.multiProcessorCount; }
    // Device scratch of at least `bytes`, valid until the next call (grown, never shrunk).
    void* scratch(size_t bytes);
    // At least `count` device ints that are zero; a kernel that counts in
    // them sets them back to zero before it ends (grown, never shrunk).
    int* zeroed_counters(size_t count);
    // A planned GEMM through cuBLASLt; the plan for each shape is built once.
    void gemm(const GemmArgs& g);
    // linear_forward of at most 8 bf16 rows (decode_linear.cu); false when the
    // shapes or dtypes are not its own and the GEMM path must run.
    bool linear_forward_few_rows(Tensor out, Tensor in, Tensor weight, bool accumulate);
    // cos/sin table [positions, D/2] (f32, interleaved cos, sin) for RoPE.
    const float2* rope_table(int64_t positions, int64_t head_dim, float theta);

private:
    CRUCIBLE_BACKEND_REQUIRED_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)
    CRUCIBLE_BACKEND_HOST_MEMORY_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)
    CRUCIBLE_BACKEND_CLASSIFIER_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)
    CRUCIBLE_BACKEND_FUSED_DECODE_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)
    CRUCIBLE_BACKEND_GRAPH_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)

    struct GemmPlan {
        cublasLtMatmulDesc_t desc = nullptr;
        cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
        cublasLtMatmulAlgo_t algo{};
    };
    using GemmKey = std::array<int64_t, 20>;
    GemmPlan& gemm_plan(const GemmKey& key, const GemmArgs& g, int alignment);
    // Replaces a device buffer of `bytes` by one of at least max(needed, minimum).
    void regrow(void*& buffer, size_t& bytes, size_t needed, size_t minimum);

    int m_device = 0;
    bool m_fp32 = false;
    cudaDeviceProp m_props{};
    cudaStream_t m_stream = nullptr;
    cublasLtHandle_t m_lt = nullptr;
    void* m_lt_workspace = nullptr;
    size_t m_lt_workspace_bytes = 0;
    std::map<GemmKey, GemmPlan> m_gemm_plans;

    void* m_scratch = nullptr;
    size_t m_scratch_bytes = 0;
    void* m_counters = nullptr;   // zeroed_counters()
    size_t m_counter_bytes = 0;
    double* m_host_result = nullptr;   // pinned, for values returned to the host

    std::map<int64_t, cudaGraphExec_t> m_graphs;
    int64_t m_next_graph = 1;
    uint64_t m_graph_epoch = 0;   // bumped when scratch or tables move (graph_epoch())

    float2* m_rope = nullptr;
    int64_t m_rope_positions = 0, m_rope_dim = 0;
    float m_rope_theta = 0.0f;

    // Every live allocate() and its size, for memory_info(): the bytes this
    // backend holds and their high-water mark, which the driver's free count
    // cannot tell apart from other processes on the same GPU. Destructors on
    // other threads may free, hence the lock.
    mutable std::mutex m_live_mutex;
    std::unordered_map<void*, size_t> m_live;
    size_t m_live_bytes = 0;
    size_t m_peak_bytes = 0;
};

} // namespace crucible
