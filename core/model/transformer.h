// Transformer: the explicit forward and backward pass of the decoder.
//
//   x = embed(tokens)
//   for each layer:
//       x = x + o_proj(attention(rope(qk_norm(qkv_proj(norm1(x))))))
//       x = x + down_proj(act(mlp_in_proj(norm2(x))))
//   loss = cross_entropy(head(norm(x)), targets)
//
// No autograd: each step of the backward is written out in reverse, reading
// what the forward saved in Activations. The conventions (packed qkv, GQA
// grouping, half-split RoPE, [out, in] weights) are Backend's, kernels/backend.h.
#pragma once

#include "core/model/activations.h"
#include "core/model/param_store.h"
#include "core/model/projection.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace crucible {

struct LossSum {
    double loss = 0.0;     // Σ per-token loss in nats
    int64_t tokens = 0;    // targets counted
    int64_t correct = 0;   // argmax == target (evaluate only)
    double mean() const { return tokens ? loss / double(tokens) : 0.0; }
};

class Transformer {
public:
    // max_batch × max_seq bounds every call; training allocates what the
    // backward needs, inference only one layer's worth. With `lora`, its
    // adapters add to the projections; a base without gradients then stays
    // frozen and only the adapters train. `grad_checkpoint` (training only)
    // keeps each layer's input alone and recomputes the layer's activations
    // in backward: the same gradients for about one more forward's work.
    // With `nf4` (QLoRA) the projections are its NF4 weights and `params`
    // holds the rest of the model (nf4_base_layout).
    Transformer(ParamStore& params, int64_t max_batch, int64_t max_seq, bool training, LoraAdapters* lora = nullptr,
                bool grad_checkpoint = false, const Nf4Base* nf4 = nullptr);

    const ModelConfig& config() const { return m_params->config(); }
    ParamStore& params() const { return *m_params; }
    LoraAdapters* lora() const { return m_lora; }
    Backend& backend() const { return m_params->backend(); }
    const Activations& activations() const { return *m_acts; }
    // The longest sequence one call takes (≤ the model's context).
    int64_t max_seq() const { return m_max_seq; }

    // Forward and backward of one micro-batch (tokens and targets are host
    // arrays [B·T]); weight gradients accumulate scaled by grad_scale.
    LossSum train_micro_batch(const int32_t* tokens, const int32_t* targets, int64_t batch, int64_t seq,
                              float grad_scale);
    // Called from train_micro_batch's backward each time the weight gradients
    // of a span [begin, end) of the layout are complete (the head and final
    // norm, then each layer from the last, then the embedding), so that a
    // data-parallel replica can send them while the backward goes on. Ranges
    // come in that order, adjacent, and cover the layout once per call. The
    // span's kernels are queued on the backend, not necessarily done.
    using GradientsReady = std::function<void(int64_t begin, int64_t end)>;
    void set_gradients_ready(GradientsReady fn) { m_gradients_ready = std::move(fn); }

    // Loss and next-token accuracy, no gradients.
    LossSum evaluate(const int32_t* tokens, const int32_t* targets, int64_t batch, int64_t seq);
    // Logits [B, V] of the last position of each sequence (full recompute).
    void last_logits(const int32_t* tokens, int64_t batch, int64_t seq, std::vector<float>& logits);

private:
    void check_shape(int64_t batch, int64_t seq) const;
    void upload_tokens(const int32_t* tokens, const int32_t* targets, int64_t n);
    void forward_layers(int64_t batch, int64_t seq, bool training);
    // Layer l from residual(l): its activations, and with `write_output` the
    // layer's output residual(l + 1).
    void forward_block(int l, int64_t batch, int64_t seq, bool training, bool write_output);
    // The base's gradient of `e`, or nothing when the base is frozen.
    Tensor grad(const ParamEntry& e) const { return m_params->grads().empty() ? Tensor() : m_params->grad(e); }
    void backward_layers(int64_t batch, int64_t seq);
    // Views of the activations for the current (possibly smaller) batch.
    Tensor rows(Tensor t, int64_t n) const { return t.slice_rows(0, n); }
    void norm_forward(Tensor out, Tensor rstd, Tensor mean, Tensor x, const ParamEntry& w, const ParamEntry* b);
    void norm_backward(Tensor dx, const ParamEntry& w, const ParamEntry* b, Tensor dout, Tensor x, Tensor rstd,
                       Tensor mean);

    ParamStore* m_params;
    LoraAdapters* m_lora;
    std::unique_ptr<Activations> m_acts;
    int64_t m_max_batch, m_max_seq;

    struct LayerParams {
        const ParamEntry *attn_norm, *attn_norm_bias, *q_norm, *k_norm;
        const ParamEntry *mlp_norm, *mlp_norm_bias;
        LayerProjections proj;
    };
    std::vector<LayerParams> m_layer_params;
    GradientsReady m_gradients_ready;
    int64_t layer_begin(int layer) const;   // where layer `layer`'s tensors start (n_layers: the tail's)
    const ParamEntry *m_embedding, *m_final_norm, *m_final_norm_bias, *m_head;
};

} // namespace crucible
