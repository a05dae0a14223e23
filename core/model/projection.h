// Projection: one GEMM of a layer (the stacked q|k|v, o, the stacked
// gate|up, down) as an object: the base weight, its gradient when the base
// trains, and the adapters that add to it. Training, evaluation and
// generation all call these, so an adapter added here works in each.
//
//   forward:   out (+)= in·Wᵀ  + Σ adapters
//   backward:  din (+)= dout·W + Σ adapters;  dW += doutᵀ·in when W trains
//
// The base weight is one of two kinds: a dense tensor in the compute dtype,
// or NF4 parts (QLoRA, core/model/nf4_base.h), frozen, which the backend
// dequantizes on the fly.
#pragma once

#include "core/model/lora.h"
#include "core/model/nf4_base.h"
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
    // An NF4 base: `parts` (owned by an Nf4Base) fill the stack's rows.
    Projection(const std::vector<Nf4Part>* parts, LoraAdapters* lora, std::vector<const LoraBlock*> blocks)
        : m_nf4(parts), m_lora(lora), m_blocks(std::move(blocks))
    {
    }

    // The dense weight; empty for an NF4 base (fused ops that need the dense
    // weight then fall back to forward()).
    Tensor weight() const { return m_weight; }
    bool is_nf4() const { return m_nf4 != nullptr; }
    bool has_adapters() const { return !m_blocks.empty(); }

    // `training` turns the adapters' dropout on.
    void forward(Backend& be, Tensor out, Tensor in, bool accumulate, bool training) const;
    void backward(Backend& be, Tensor din, Tensor dout, Tensor in, bool accumulate_din, bool training) const;

private:
    Tensor m_weight, m_weight_grad;   // grad empty: the base is frozen
    const std::vector<Nf4Part>* m_nf4 = nullptr;
    LoraAdapters* m_lora = nullptr;
    std::vector<const LoraBlock*> m_blocks;
};

struct LayerProjections {
    Projection qkv, o, mlp_in, down;
};

// Layer `layer`'s projections over `base` (its gradients when it has them)
// and the adapters of `lora` (may be null). With `nf4`, the base's
// projections are its NF4 parts and `base` holds the rest of the model.
LayerProjections layer_projections(const ParamStore& base, LoraAdapters* lora, int layer,
                                   const Nf4Base* nf4 = nullptr);

} // namespace crucible
