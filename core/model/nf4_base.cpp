#include "core/model/nf4_base.h"

#include "core/quant/nf4.h"
#include "kernels/error.h"

namespace crucible {

namespace {

// The modules of one stacked projection, in stack order.
std::vector<ParamRole> stack_roles(LayerProjection p, const ModelConfig& c)
{
    switch (p) {
    case LayerProjection::qkv: return {ParamRole::q_proj, ParamRole::k_proj, ParamRole::v_proj};
    case LayerProjection::o: return {ParamRole::o_proj};
    case LayerProjection::mlp_in:
        return c.mlp == MlpType::swiglu ? std::vector{ParamRole::gate_proj, ParamRole::up_proj}
                                        : std::vector{ParamRole::up_proj};
    case LayerProjection::down: return {ParamRole::down_proj};
    }
    return {};
}

constexpr LayerProjection kProjections[] = {LayerProjection::qkv, LayerProjection::o, LayerProjection::mlp_in,
                                            LayerProjection::down};

} // namespace

bool is_nf4_projection(ParamRole role)
{
    switch (role) {
    case ParamRole::q_proj: case ParamRole::k_proj: case ParamRole::v_proj: case ParamRole::o_proj:
    case ParamRole::gate_proj: case ParamRole::up_proj: case ParamRole::down_proj:
        return true;
    default:
        return false;
    }
}

ParamLayout nf4_base_layout(const ModelConfig& config)
{
    std::vector<ParamEntry> rest;
    const ParamLayout full(config);
    for (const ParamEntry& e : full.entries())
        if (!is_nf4_projection(e.role)) rest.push_back(e);
    return ParamLayout(config, std::move(rest));
}

void upload_nf4_base_rest(ParamStore& store, const ParamLayout& full, const std::vector<float>& master)
{
    std::vector<float> host(size_t(store.layout().total()), 0.0f);
    for (const ParamEntry& e : store.layout().entries()) {
        const ParamEntry* from = full.find(e.name);
        CRUCIBLE_CHECK(from && from->numel() == e.numel(), "the base has no tensor " + e.name);
        std::copy_n(master.begin() + from->offset, e.numel(), host.begin() + e.offset);
    }
    store.upload_master(host);
}

void nf4_round_trip_projections(const ParamLayout& layout, std::vector<float>& master)
{
    for (const ParamEntry& e : layout.entries()) {
        if (!is_nf4_projection(e.role)) continue;
        float* w = master.data() + e.offset;
        nf4_dequantize(nf4_quantize(w, e.numel(), true), w);
    }
}

Nf4Base::Nf4Base(Backend& backend, const ParamLayout& layout, const std::vector<float>& master)
    : m_config(layout.config())
{
    const ModelConfig& c = m_config;
    CRUCIBLE_CHECK(int64_t(master.size()) == layout.total(), "the base weights have the wrong size");
    struct Module {
        Nf4Tensor q;
        int64_t rows, cols, row_begin;
    };
    // Quantize on the host, then carve one device buffer for every module.
    std::vector<std::vector<Module>> modules(size_t(c.n_layers) * 4);
    for (int l = 0; l < c.n_layers; ++l)
        for (LayerProjection p : kProjections) {
            int64_t row = 0;
            for (ParamRole role : stack_roles(p, c)) {
                const ParamEntry& e = layout.at(role, l);
                modules[size_t(l) * 4 + size_t(p)].push_back(
                    Module{nf4_quantize(master.data() + e.offset, e.numel(), true), e.shape[0], e.shape[1], row});
                row += e.shape[0];
                m_weights += e.numel();
            }
        }
    auto carve = [&](Arena& a, bool fill) {
        Tensor code = a.take(DType::f32, Shape{256});
        if (fill) backend.upload(code, dynamic_code_signed().data(), DType::f32);
        m_parts.assign(modules.size(), {});
        for (size_t i = 0; i < modules.size(); ++i)
            for (const Module& m : modules[i]) {
                Nf4Part part;
                Nf4Weight& w = part.weight;
                w.rows = m.rows;
                w.cols = m.cols;
                w.code = code;
                w.absmax_mean = m.q.absmax_mean;
                w.packed = a.take(DType::u8, Shape{int64_t(m.q.packed.size())});
                w.absmax_codes = a.take(DType::u8, Shape{int64_t(m.q.absmax_codes.size())});
                w.absmax_scales = a.take(DType::f32, Shape{int64_t(m.q.absmax_scales.size())});
                part.row_begin = m.row_begin;
                if (fill) {
                    backend.upload(w.packed, m.q.packed.data(), DType::u8);
                    backend.upload(w.absmax_codes, m.q.absmax_codes.data(), DType::u8);
                    backend.upload(w.absmax_scales, m.q.absmax_scales.data(), DType::f32);
                }
                m_parts[i].push_back(part);
            }
    };
    Arena counter;
    carve(counter, false);
    m_buffer = DeviceBuffer(backend, counter.used());
    Arena arena(m_buffer, backend.device());
    carve(arena, true);
}

} // namespace crucible
