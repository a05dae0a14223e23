// ParamLayout: where every parameter lives in the one contiguous buffer.
//
// All parameters share one f32 buffer (and gradients and optimizer state
// mirror it), so a global gradient norm is one reduction over one span,
// data-parallel training would be one all-reduce and a checkpoint is one
// write. (The optimizers still launch one update per tensor: AdamW's weight
// decay and Muon's matrices differ from tensor to tensor.) Each tensor keeps its Hugging Face
// Llama name and [out, in] shape.
//
// Order: embedding, then one block per layer, then the final norm and (when
// untied) the head. Inside a layer q_proj, k_proj and v_proj are adjacent, and
// so are gate_proj and up_proj, so the attention input projection and the MLP
// input projection are each one GEMM over a stacked weight. Every layer block
// has the same size, so "q_proj of every layer" is a strided batch (Muon).
#pragma once

#include "core/model/model_config.h"
#include "kernels/tensor.h"

#include <string>
#include <string_view>
#include <vector>

namespace crucible {

enum class ParamRole {
    embedding,
    attn_norm, attn_norm_bias,
    q_proj, k_proj, v_proj, q_norm, k_norm, o_proj,
    mlp_norm, mlp_norm_bias,
    gate_proj, up_proj, down_proj,
    final_norm, final_norm_bias,
    lm_head,
    lora_a, lora_b,   // adapters (core/model/lora.h), in a store of their own
};

struct ParamEntry {
    std::string name;      // Hugging Face name, e.g. model.layers.3.self_attn.q_proj.weight
    ParamRole role;
    int layer = -1;        // -1 for tensors outside the layer stack
    Shape shape;           // [out, in] for matrices, [n] for vectors
    int64_t offset = 0;    // in elements, from the start of the buffer

    int64_t numel() const { return shape.numel(); }
    // The shape as a list of dimensions, as tensor files store it.
    std::vector<int64_t> dims() const { return {shape.dims.begin(), shape.dims.begin() + shape.rank}; }
    bool is_matrix() const { return shape.rank == 2; }
    // Hidden 2-D matrices (attention and MLP projections): Muon's share.
    bool is_hidden_matrix() const;
    // Weight decay applies to matrices (embedding and head included), not to norms.
    bool decays() const { return is_matrix(); }
};

class ParamLayout {
public:
    explicit ParamLayout(const ModelConfig& config);
    // Another set of tensors for a model of `config` (adapters): the entries'
    // offsets are assigned here, each tensor aligned as the model's are.
    ParamLayout(const ModelConfig& config, std::vector<ParamEntry> entries);

    const ModelConfig& config() const { return m_config; }
    const std::vector<ParamEntry>& entries() const { return m_entries; }
    int64_t total() const { return m_total; }
    int64_t layer_stride() const { return m_layer_stride; }

    const ParamEntry& at(ParamRole role, int layer = -1) const;
    const ParamEntry* find(std::string_view name) const;   // nullptr when absent
    // The tensor the head multiplies by: lm_head, or the embedding when tied.
    const ParamEntry& head() const;

private:
    ModelConfig m_config;
    std::vector<ParamEntry> m_entries;
    int64_t m_total = 0;
    int64_t m_layer_stride = 0;
};

// Views of one buffer laid out by a ParamLayout.
Tensor param_view(const Tensor& buffer, const ParamEntry& e);
// q_proj..v_proj stacked: [(H + 2·KV)·D, d_model]
Tensor qkv_weight_view(const Tensor& buffer, const ParamLayout& layout, int layer);
// gate_proj and up_proj stacked (SwiGLU) or up_proj alone (GELU): [mlp_in_dim, d_model]
Tensor mlp_in_weight_view(const Tensor& buffer, const ParamLayout& layout, int layer);

} // namespace crucible
