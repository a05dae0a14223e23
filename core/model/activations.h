// Activations: every buffer a forward and backward pass needs, carved from one
// arena sized before the first step. In training mode each layer keeps what
// its backward reads; in inference mode one set is reused by every layer.
#pragma once

#include "core/model/model_config.h"
#include "core/tensor/buffer.h"

#include <vector>

namespace crucible {

struct LayerActivations {
    Tensor norm1_out, norm1_rstd, norm1_mean;  // [N, C], [N], [N] (mean: LayerNorm only)
    Tensor qkv_raw, qk_rstd;                   // QK-norm only: [N, QKV], [N, H + KV]
    Tensor qkv;                                // [N, QKV] after QK-norm and RoPE
    Tensor attn_out, lse;                      // [N, H·D], [B, H, T]
    Tensor norm2_out, norm2_rstd, norm2_mean;
    Tensor mlp_in;                             // [N, 2F] gate|up (or [N, F] for GELU)
    Tensor mlp_act;                            // [N, F]
};

struct ActivationShape {
    int64_t batch = 1;
    int64_t seq = 1;
    bool training = true;
    // Gradient checkpointing (training only): every layer's input is kept,
    // but one set of block activations serves all layers; the backward
    // recomputes a layer's set from its input before using it.
    bool checkpoint = false;
    int64_t tokens() const { return batch * seq; }
    // Layers that keep their own set of block activations.
    bool per_layer_sets() const { return training && !checkpoint; }
};

class Activations {
public:
    Activations(Backend& backend, const ModelConfig& config, ActivationShape shape);

    // Bytes the arena for this configuration takes, without allocating it.
    static size_t plan_bytes(const ModelConfig& config, ActivationShape shape, DType compute);

    const ActivationShape& shape() const { return m_shape; }
    size_t bytes() const { return m_buffer.bytes(); }

    LayerActivations& layer(int l) { return m_layers[m_shape.per_layer_sets() ? size_t(l) : 0]; }
    // Residual stream: residual(0) is the embedding output, residual(l + 1) the
    // output of layer l (kept for every layer when training, checkpointed or
    // not); mid(l) is layer l's stream after its attention block.
    Tensor residual(int l) { return m_shape.training ? m_residual[size_t(l)] : m_residual[size_t(l % 2)]; }
    Tensor mid(int l) { return m_mid[m_shape.per_layer_sets() ? size_t(l) : 0]; }

    Tensor final_norm_out, final_norm_rstd, final_norm_mean;
    Tensor tokens, targets;        // [N] i32
    Tensor losses, correct;        // [N] f32, [N] i32
    // Gradient scratch, reused by every layer (training only).
    Tensor d_residual, d_norm, d_attn, d_qkv, d_qkv_raw, d_mlp_act, d_mlp_in;

private:
    Activations() = default;   // planning only
    void carve(Arena& arena, const ModelConfig& c, DType dt);

    ActivationShape m_shape;
    DeviceBuffer m_buffer;
    std::vector<LayerActivations> m_layers;
    std::vector<Tensor> m_residual, m_mid;
};

} // namespace crucible
