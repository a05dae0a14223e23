// CudaBackend: the generation ops (launchers in cuda_kv_cache.cu and
// cuda_decode_attention.cu) and CUDA graphs, which turn a decode step's few
// hundred small launches into one.
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/cuda_generation.h"

namespace crucible {

void CudaBackend::do_rope_forward_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta)
{
    cuda::launch_rope_at(qkv, s, positions, theta, m_stream);
}

void CudaBackend::do_kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions,
                                    const AttentionShape& s)
{
    cuda::launch_kv_cache_write(k_cache, v_cache, qkv, positions, s, m_stream);
}

void CudaBackend::do_attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                                      const AttentionShape& s)
{
    cuda::launch_decode_attention(out, qkv, k_cache, v_cache, positions, s, sm_count(), m_props.major >= 9, m_stream);
}

int64_t CudaBackend::do_capture_graph(const std::function<void()>& ops)
{
    CRUCIBLE_CUDA_CHECK(cudaStreamBeginCapture(m_stream, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
        ops();
    } catch (...) {
        // Something in `ops` cannot be captured (an allocation, a sync):
        // abandon the capture; the caller runs the work directly.
        cudaStreamEndCapture(m_stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        cudaGetLastError();
        return 0;
    }
    if (cudaStreamEndCapture(m_stream, &graph) != cudaSuccess || !graph) {
        cudaGetLastError();
        return 0;
    }
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    const int64_t id = m_next_graph++;
    m_graphs[id] = exec;
    return id;
}

uint64_t CudaBackend::do_graph_epoch() const { return m_graph_epoch; }

void CudaBackend::do_replay_graph(int64_t graph)
{
    auto it = m_graphs.find(graph);
    CRUCIBLE_REQUIRE(it != m_graphs.end(), "replay_graph: there is no graph " + std::to_string(graph) +
                                               " (it was released, or never captured)");
    CRUCIBLE_CUDA_CHECK(cudaGraphLaunch(it->second, m_stream));
}

void CudaBackend::do_release_graph(int64_t graph)
{
    auto it = m_graphs.find(graph);
    if (it == m_graphs.end()) return;
    cudaGraphExecDestroy(it->second);
    m_graphs.erase(it);
}

} // namespace crucible
