// Nf4Base: the frozen base projections of a QLoRA fine-tune in NF4 with
// double quantization, on the device. Each module (q_proj ... down_proj of
// each layer) is quantized on its own, as bitsandbytes' Linear4bit does, and
// a stacked GEMM (q|k|v, gate|up) runs over its parts. Embeddings, norms and
// the head stay in a ParamStore of their own (nf4_base_layout), in high
// precision, as in QLoRA.
#pragma once

#include "core/model/lora.h"
#include "core/model/param_store.h"
#include "core/tensor/buffer.h"
#include "kernels/nf4_weight.h"

#include <vector>

namespace crucible {

// One module of a stacked projection: its NF4 weight and the first row it
// fills in the stack's output.
struct Nf4Part {
    Nf4Weight weight;
    int64_t row_begin = 0;
};

class Nf4Base {
public:
    // Quantizes the projection weights of `master` (f32 on the host, laid
    // out by `layout`, a whole model's) into memory of `backend`.
    Nf4Base(Backend& backend, const ParamLayout& layout, const std::vector<float>& master);

    const ModelConfig& config() const { return m_config; }
    const std::vector<Nf4Part>& parts(int layer, LayerProjection projection) const
    {
        return m_parts[size_t(layer) * 4 + size_t(projection)];
    }
    // Device bytes of the NF4 storage (codes, absmax codes and scales).
    size_t bytes() const { return m_buffer.bytes(); }
    // Weights stored (for bits per weight and bf16 comparisons).
    int64_t weights() const { return m_weights; }

private:
    ModelConfig m_config;
    DeviceBuffer m_buffer;
    std::vector<std::vector<Nf4Part>> m_parts;   // [layer·4 + projection]
    int64_t m_weights = 0;
};

// True for the parameters a QLoRA base keeps in NF4 (the seven projections).
bool is_nf4_projection(ParamRole role);
// The layout of what a QLoRA base keeps in high precision: every tensor of
// ParamLayout(config) but the projections, with the same names and roles.
ParamLayout nf4_base_layout(const ModelConfig& config);
// Copies the high-precision tensors of a whole model's `master` into `store`
// (laid out by nf4_base_layout).
void upload_nf4_base_rest(ParamStore& store, const ParamLayout& full, const std::vector<float>& master);
// Replaces every projection weight in `master` by its NF4 round trip
// (quantize with double quant, dequantize): the base a QLoRA run trained on,
// in f32, for merging adapters into it.
void nf4_round_trip_projections(const ParamLayout& layout, std::vector<float>& master);

} // namespace crucible
