// Projection: one GEMM of a layer (the stacked q|k|v, o, the stacked
// gate|up, down) as an object: the base weight, its gradient when the base
// trains, and the adapters that add to it. Training, evaluation and
// generation all call these, so an adapter added here works in each.
//
//   forward:   out (+)= in·Wᵀ  + Σ adapters
//   backward:  din (+)= dout·W + Σ adapters;  dW += doutᵀ·in when W trains
#pragma once

#include "core/model/lora.h"
#include "core/model/param_store.h"

#include <vector>

namespace crucible {

class Projection {
public:
    Projection() = default;
    Projection(Tensor weight, Tensor weight_grad, LoraAdapters* lora, std::vector<const LoraBlock*> blocks)
        : m_weight(weight), m_weight_grad(weight_grad), m_lora(lora), m_blocks(std::move(blocks))
    {
    }

    Tensor weight() const { return m_weight; }
    bool has_adapters() const { return !m_blocks.empty(); }

    // `training` turns the adapters' dropout on.
    void forward(Backend& be, Tensor out, Tensor in, bool accumulate, bool training) const
    {
        be.linear_forward(out, in, m_weight, accumulate);
        for (const LoraBlock* b : m_blocks) m_lora->forward(*b, out, in, training);
    }
    void backward(Backend& be, Tensor din, Tensor dout, Tensor in, bool accumulate_din, bool training) const
    {
        be.linear_backward(din, m_weight_grad, dout, in, m_weight, accumulate_din);
        for (const LoraBlock* b : m_blocks) m_lora->backward(*b, din, dout, in, training);
    }

private:
    Tensor m_weight, m_weight_grad;   // grad empty: the base is frozen
    LoraAdapters* m_lora = nullptr;
    std::vector<const LoraBlock*> m_blocks;
};

struct LayerProjections {
    Projection qkv, o, mlp_in, down;
};

// Layer `layer`'s projections over `base` (its gradients when it has them)
// and the adapters of `lora` (may be null).
LayerProjections layer_projections(const ParamStore& base, LoraAdapters* lora, int layer);

} // namespace crucible
