#include "core/model/param_layout.h"

#include "kernels/error.h"

namespace crucible {

namespace {

// Tensors start on 64-element boundaries (256 bytes in f32) so vectorised
// kernels see aligned rows; stacked groups (q|k|v, gate|up) stay contiguous.
constexpr int64_t kAlign = 64;
int64_t align_up(int64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

} // namespace

bool ParamEntry::is_hidden_matrix() const
{
    switch (role) {
    case ParamRole::q_proj: case ParamRole::k_proj: case ParamRole::v_proj: case ParamRole::o_proj:
    case ParamRole::gate_proj: case ParamRole::up_proj: case ParamRole::down_proj:
        return true;
    default:
        return false;
    }
}

ParamLayout::ParamLayout(const ModelConfig& config) : m_config(config)
{
    config.validate();
    const int64_t d = config.d_model, hd = config.resolved_head_dim();
    const bool layernorm = config.norm == NormType::layernorm;
    int64_t offset = 0;
    auto add = [&](std::string name, ParamRole role, int layer, Shape shape, bool packed_with_previous) {
        if (!packed_with_previous) offset = align_up(offset);
        m_entries.push_back(ParamEntry{std::move(name), role, layer, shape, offset});
        offset += shape.numel();
    };

    add("model.embed_tokens.weight", ParamRole::embedding, -1, Shape{config.vocab_size, d}, false);
    offset = align_up(offset);
    const int64_t first_layer = offset;
    for (int l = 0; l < config.n_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        add(p + "input_layernorm.weight", ParamRole::attn_norm, l, Shape{d}, false);
        if (layernorm) add(p + "input_layernorm.bias", ParamRole::attn_norm_bias, l, Shape{d}, false);
        add(p + "self_attn.q_proj.weight", ParamRole::q_proj, l, Shape{config.q_dim(), d}, false);
        add(p + "self_attn.k_proj.weight", ParamRole::k_proj, l, Shape{config.kv_dim(), d}, true);
        add(p + "self_attn.v_proj.weight", ParamRole::v_proj, l, Shape{config.kv_dim(), d}, true);
        if (config.qk_norm) {
            add(p + "self_attn.q_norm.weight", ParamRole::q_norm, l, Shape{hd}, false);
            add(p + "self_attn.k_norm.weight", ParamRole::k_norm, l, Shape{hd}, false);
        }
        add(p + "self_attn.o_proj.weight", ParamRole::o_proj, l, Shape{d, config.q_dim()}, false);
        add(p + "post_attention_layernorm.weight", ParamRole::mlp_norm, l, Shape{d}, false);
        if (layernorm) add(p + "post_attention_layernorm.bias", ParamRole::mlp_norm_bias, l, Shape{d}, false);
        if (config.mlp == MlpType::swiglu)
            add(p + "mlp.gate_proj.weight", ParamRole::gate_proj, l, Shape{config.ff_dim, d}, false);
        add(p + "mlp.up_proj.weight", ParamRole::up_proj, l, Shape{config.ff_dim, d},
            config.mlp == MlpType::swiglu);
        add(p + "mlp.down_proj.weight", ParamRole::down_proj, l, Shape{d, config.ff_dim}, false);
        offset = align_up(offset);
        if (l == 0) m_layer_stride = offset - first_layer;
    }
    add("model.norm.weight", ParamRole::final_norm, -1, Shape{d}, false);
    if (layernorm) add("model.norm.bias", ParamRole::final_norm_bias, -1, Shape{d}, false);
    if (!config.tied_embeddings)
        add("lm_head.weight", ParamRole::lm_head, -1, Shape{config.vocab_size, d}, false);
    m_total = align_up(offset);
}

ParamLayout::ParamLayout(const ModelConfig& config, std::vector<ParamEntry> entries)
    : m_config(config), m_entries(std::move(entries))
{
    int64_t offset = 0;
    for (ParamEntry& e : m_entries) {
        e.offset = align_up(offset);
        offset = e.offset + e.numel();
    }
    m_total = align_up(offset);
}

const ParamEntry& ParamLayout::at(ParamRole role, int layer) const
{
    for (const auto& e : m_entries)
        if (e.role == role && e.layer == layer) return e;
    CRUCIBLE_CHECK(false, "this model has no parameter for the requested role and layer");
    return m_entries.front();
}

const ParamEntry* ParamLayout::find(std::string_view name) const
{
    for (const auto& e : m_entries)
        if (e.name == name) return &e;
    return nullptr;
}

const ParamEntry& ParamLayout::head() const
{
    return m_config.tied_embeddings ? at(ParamRole::embedding) : at(ParamRole::lm_head);
}

Tensor param_view(const Tensor& buffer, const ParamEntry& e)
{
    return buffer.sub(e.offset, e.shape);
}

Tensor qkv_weight_view(const Tensor& buffer, const ParamLayout& layout, int layer)
{
    const auto& q = layout.at(ParamRole::q_proj, layer);
    const ModelConfig& c = layout.config();
    return buffer.sub(q.offset, Shape{c.qkv_dim(), c.d_model});
}

Tensor mlp_in_weight_view(const Tensor& buffer, const ParamLayout& layout, int layer)
{
    const ModelConfig& c = layout.config();
    const auto& first = layout.at(c.mlp == MlpType::swiglu ? ParamRole::gate_proj : ParamRole::up_proj, layer);
    return buffer.sub(first.offset, Shape{c.mlp_in_dim(), c.d_model});
}

} // namespace crucible
