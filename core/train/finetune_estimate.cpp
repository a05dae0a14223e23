#include "core/train/finetune_estimate.h"

#include "core/model/lora.h"
#include "core/train/memory_estimate.h"

#include <algorithm>

namespace crucible {

size_t nf4_bytes(int64_t n)
{
    const int64_t blocks = (n + 63) / 64;
    const int64_t groups = (blocks + 255) / 256;
    return size_t((n + 1) / 2 + blocks + 4 * groups + 4);
}

FinetuneEstimate estimate_finetune(const ModelConfig& model, const FinetuneConfig& ft, int batch, int seq,
                                   DType compute)
{
    // The engine's own estimate of the fine-tune (QLoRA and checkpointing
    // included) is the reference; this only splits it by part. The adapters
    // are what has gradients (f32), plus their compute copy; everything else
    // held for weights is the frozen base.
    const MemoryEstimate e = estimate_finetune_memory(model, ft.lora, batch, seq, compute, ft.qlora, ft.grad_checkpoint);
    FinetuneEstimate f;
    f.base_parameters = count_params(model).total();
    f.trainable = lora_parameter_count(model, ft.lora);
    const int64_t adapter_elements = int64_t(e.gradients / dtype_bytes(DType::f32, 1));
    f.adapters = e.gradients + (compute == DType::f32 ? 0 : dtype_bytes(compute, adapter_elements));
    f.adapter_optimizer = e.gradients + e.optimizer;
    f.frozen_base = e.parameters + e.compute_copy + e.nf4_weights - f.adapters;
    f.activations = e.activations;
    f.workspace = e.workspace;
    return f;
}

} // namespace crucible
