#include "core/train/memory_estimate.h"

#include "core/model/activations.h"
#include "core/model/nf4_base.h"
#include "core/model/param_layout.h"
#include "kernels/backend.h"
#include "kernels/error.h"

#include <algorithm>
#include <cstdio>

namespace crucible {

std::string format_bytes(double b)
{
    const char* units[] = {"B", "KB", "MB", "GB", "TB"};
    int u = 0;
    while (b >= 1000.0 && u < 4) { b /= 1000.0; ++u; }
    char buf[32];
    std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
    return buf;
}

std::string MemoryEstimate::breakdown() const
{
    std::string s = "weights " + format_bytes(double(parameters + compute_copy));
    if (nf4_weights) s += " + NF4 base " + format_bytes(double(nf4_weights));
    if (gradients) s += ", gradients " + format_bytes(double(gradients));
    if (optimizer) s += ", optimizer " + format_bytes(double(optimizer));
    s += ", activations " + format_bytes(double(activations));
    s += ", workspace " + format_bytes(double(workspace));
    return s + " — total " + format_bytes(double(total()));
}

namespace {

MemoryEstimate estimate(const ModelConfig& model, int batch, int seq, DType compute, bool training,
                        bool checkpoint = false, bool qlora = false)
{
    const int64_t n = qlora ? nf4_base_layout(model).total() : ParamLayout(model).total();
    MemoryEstimate e;
    e.parameters = dtype_bytes(DType::f32, n);
    e.compute_copy = compute == DType::f32 ? 0 : dtype_bytes(compute, n);
    e.gradients = training ? dtype_bytes(DType::f32, n) : 0;
    e.optimizer = training ? optimizer_state_bytes(n) : 0;
    e.activations = Activations::plan_bytes(model, ActivationShape{batch, seq, training, training && checkpoint}, compute);
    if (qlora) e.nf4_weights = nf4_base_bytes(model);
    const int64_t chunk = std::min<int64_t>(int64_t(batch) * seq, kClassifierChunkRows);
    // The classifier's logits chunk, plus headroom for library workspaces
    // (cuBLAS, attention scratch) on GPUs.
    e.workspace = dtype_bytes(compute, chunk * model.vocab_size) + (compute == DType::f32 ? 0 : (size_t(64) << 20));
    return e;
}

} // namespace

size_t nf4_base_bytes(const ModelConfig& model)
{
    // Nf4Base's arena: the shared 256-entry code, then per module its codes,
    // absmax codes and absmax scales, each starting on a 256-byte boundary.
    size_t used = 0;
    auto take = [&used](size_t bytes) { used = (used + 255) / 256 * 256 + bytes; };
    take(256 * sizeof(float));
    const ParamLayout layout(model);
    for (const ParamEntry& e : layout.entries()) {
        if (!is_nf4_projection(e.role)) continue;
        const int64_t blocks = (e.numel() + kNf4WeightBlock - 1) / kNf4WeightBlock;
        take(size_t(e.numel() + 1) / 2);
        take(size_t(blocks));
        take(sizeof(float) * size_t((blocks + kNf4WeightAbsmaxBlock - 1) / kNf4WeightAbsmaxBlock));
    }
    return used;
}

MemoryEstimate estimate_training_memory(const ModelConfig& model, int batch, int seq, DType compute,
                                        bool grad_checkpoint)
{
    return estimate(model, batch, seq, compute, true, grad_checkpoint);
}

MemoryEstimate estimate_finetune_memory(const ModelConfig& model, const LoraConfig& lora, int batch, int seq,
                                        DType compute, bool qlora, bool grad_checkpoint)
{
    MemoryEstimate e = estimate(model, batch, seq, compute, true, grad_checkpoint, qlora);
    // The frozen base keeps no f32 master copy where the compute dtype differs.
    if (compute != DType::f32) e.parameters = 0;
    // The adapters' store is padded (B̃ spans its stacked GEMM's rows).
    int64_t adapter = 0, max_in = 0;
    const int64_t r = lora.rank;
    for (const std::string& m : lora.targets) {
        const bool attention = m == "q_proj" || m == "k_proj" || m == "v_proj";
        const bool mlp_in = m == "gate_proj" || m == "up_proj";
        const int64_t in = m == "o_proj" ? model.q_dim() : m == "down_proj" ? model.ff_dim : model.d_model;
        const int64_t rows = attention ? model.qkv_dim() : mlp_in ? model.mlp_in_dim() : model.d_model;
        adapter += r * (in + rows) + 128;   // + alignment
        max_in = std::max(max_in, in);
    }
    adapter *= model.n_layers;
    e.parameters += dtype_bytes(DType::f32, adapter);
    if (compute != DType::f32) e.compute_copy += dtype_bytes(compute, adapter);
    e.gradients = dtype_bytes(DType::f32, adapter);
    e.optimizer = optimizer_state_bytes(adapter);
    const int64_t tokens = int64_t(batch) * seq;
    e.activations += dtype_bytes(compute, tokens * (2 * r + (lora.dropout > 0.0f ? 2 * max_in : 0)));
    return e;
}

MemoryEstimate estimate_inference_memory(const ModelConfig& model, int batch, int seq, DType compute)
{
    return estimate(model, batch, seq, compute, false);
}

void check_fits(const MemoryEstimate& need, size_t free_bytes, const std::string& device)
{
    if (free_bytes == 0 || need.total() <= free_bytes) return;
    throw Error("this configuration needs about " + format_bytes(double(need.total())) + " but only " +
                format_bytes(double(free_bytes)) + " is free on " + device + " (" + need.breakdown() +
                "). Lower the batch size or sequence length, use gradient accumulation, or choose a smaller model.");
}

} // namespace crucible
