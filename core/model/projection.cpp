#include "core/model/projection.h"

namespace crucible {

void Projection::forward(Backend& be, Tensor out, Tensor in, bool accumulate, bool training) const
{
    if (m_nf4) {
        for (const Nf4Part& p : *m_nf4) be.nf4_linear_forward(out, in, p.weight, p.row_begin, accumulate);
    } else {
        be.linear_forward(out, in, m_weight, accumulate);
    }
    for (const LoraBlock* b : m_blocks) m_lora->forward(*b, out, in, training);
}

void Projection::backward(Backend& be, Tensor din, Tensor dout, Tensor in, bool accumulate_din, bool training) const
{
    if (m_nf4) {
        // The parts' input gradients sum: the first sets (or adds to) din.
        bool add = accumulate_din;
        for (const Nf4Part& p : *m_nf4) {
            be.nf4_linear_backward(din, dout, p.weight, p.row_begin, add);
            add = true;
        }
    } else {
        be.linear_backward(din, m_weight_grad, dout, in, m_weight, accumulate_din);
    }
    for (const LoraBlock* b : m_blocks) m_lora->backward(*b, din, dout, in, training);
}

LayerProjections layer_projections(const ParamStore& base, LoraAdapters* lora, int layer, const Nf4Base* nf4)
{
    auto blocks = [&](LayerProjection p) {
        return lora ? lora->blocks_of(layer, p) : std::vector<const LoraBlock*>{};
    };
    LayerProjections p;
    if (nf4) {
        p.qkv = Projection(&nf4->parts(layer, LayerProjection::qkv), lora, blocks(LayerProjection::qkv));
        p.o = Projection(&nf4->parts(layer, LayerProjection::o), lora, blocks(LayerProjection::o));
        p.mlp_in = Projection(&nf4->parts(layer, LayerProjection::mlp_in), lora, blocks(LayerProjection::mlp_in));
        p.down = Projection(&nf4->parts(layer, LayerProjection::down), lora, blocks(LayerProjection::down));
        return p;
    }
    const ParamLayout& layout = base.layout();
    const Tensor W = base.compute(), G = base.grads();
    const bool trains = !G.empty();
    const ParamEntry& o = layout.at(ParamRole::o_proj, layer);
    const ParamEntry& down = layout.at(ParamRole::down_proj, layer);
    p.qkv = Projection(qkv_weight_view(W, layout, layer), trains ? qkv_weight_view(G, layout, layer) : Tensor(), lora,
                       blocks(LayerProjection::qkv));
    p.o = Projection(base.compute(o), trains ? base.grad(o) : Tensor(), lora, blocks(LayerProjection::o));
    p.mlp_in = Projection(mlp_in_weight_view(W, layout, layer), trains ? mlp_in_weight_view(G, layout, layer) : Tensor(),
                          lora, blocks(LayerProjection::mlp_in));
    p.down = Projection(base.compute(down), trains ? base.grad(down) : Tensor(), lora, blocks(LayerProjection::down));
    return p;
}

} // namespace crucible
