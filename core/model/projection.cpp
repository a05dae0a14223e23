#include "core/model/projection.h"

namespace crucible {

LayerProjections layer_projections(const ParamStore& base, LoraAdapters* lora, int layer)
{
    const ParamLayout& layout = base.layout();
    const Tensor W = base.compute(), G = base.grads();
    const bool trains = !G.empty();
    auto blocks = [&](LayerProjection p) {
        return lora ? lora->blocks_of(layer, p) : std::vector<const LoraBlock*>{};
    };
    const ParamEntry& o = layout.at(ParamRole::o_proj, layer);
    const ParamEntry& down = layout.at(ParamRole::down_proj, layer);
    LayerProjections p;
    p.qkv = Projection(qkv_weight_view(W, layout, layer), trains ? qkv_weight_view(G, layout, layer) : Tensor(), lora,
                       blocks(LayerProjection::qkv));
    p.o = Projection(base.compute(o), trains ? base.grad(o) : Tensor(), lora, blocks(LayerProjection::o));
    p.mlp_in = Projection(mlp_in_weight_view(W, layout, layer), trains ? mlp_in_weight_view(G, layout, layer) : Tensor(),
                          lora, blocks(LayerProjection::mlp_in));
    p.down = Projection(base.compute(down), trains ? base.grad(down) : Tensor(), lora, blocks(LayerProjection::down));
    return p;
}

} // namespace crucible
