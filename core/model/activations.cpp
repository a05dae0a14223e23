#include "core/model/activations.h"

namespace crucible {

void Activations::carve(Arena& a, const ModelConfig& c, DType dt)
{
    const int64_t n = m_shape.tokens(), d = c.d_model;
    const bool layernorm = c.norm == NormType::layernorm;
    const size_t sets = m_shape.per_layer_sets() ? size_t(c.n_layers) : 1;
    const size_t streams = m_shape.training ? size_t(c.n_layers) + 1 : 2;

    m_residual.clear();
    m_mid.clear();
    m_layers.assign(sets, LayerActivations{});
    for (size_t i = 0; i < streams; ++i) m_residual.push_back(a.take(dt, Shape{n, d}));
    for (size_t i = 0; i < sets; ++i) m_mid.push_back(a.take(dt, Shape{n, d}));
    for (auto& L : m_layers) {
        L.norm1_out = a.take(dt, Shape{n, d});
        L.norm1_rstd = a.take(DType::f32, Shape{n});
        if (layernorm) L.norm1_mean = a.take(DType::f32, Shape{n});
        if (c.qk_norm) {
            L.qkv_raw = a.take(dt, Shape{n, c.qkv_dim()});
            L.qk_rstd = a.take(DType::f32, Shape{n, c.n_heads + c.n_kv_heads});
        }
        L.qkv = a.take(dt, Shape{n, c.qkv_dim()});
        L.attn_out = a.take(dt, Shape{n, c.q_dim()});
        L.lse = a.take(DType::f32, Shape{m_shape.batch, c.n_heads, m_shape.seq});
        L.norm2_out = a.take(dt, Shape{n, d});
        L.norm2_rstd = a.take(DType::f32, Shape{n});
        if (layernorm) L.norm2_mean = a.take(DType::f32, Shape{n});
        L.mlp_in = a.take(dt, Shape{n, c.mlp_in_dim()});
        L.mlp_act = a.take(dt, Shape{n, c.ff_dim});
    }
    final_norm_out = a.take(dt, Shape{n, d});
    final_norm_rstd = a.take(DType::f32, Shape{n});
    if (layernorm) final_norm_mean = a.take(DType::f32, Shape{n});
    tokens = a.take(DType::i32, Shape{n});
    targets = a.take(DType::i32, Shape{n});
    losses = a.take(DType::f32, Shape{n});
    correct = a.take(DType::i32, Shape{n});
    if (m_shape.training) {
        d_residual = a.take(dt, Shape{n, d});
        d_norm = a.take(dt, Shape{n, d});
        d_attn = a.take(dt, Shape{n, c.q_dim()});
        d_qkv = a.take(dt, Shape{n, c.qkv_dim()});
        if (c.qk_norm) d_qkv_raw = a.take(dt, Shape{n, c.qkv_dim()});
        d_mlp_act = a.take(dt, Shape{n, c.ff_dim});
        d_mlp_in = a.take(dt, Shape{n, c.mlp_in_dim()});
    }
}

size_t Activations::plan_bytes(const ModelConfig& config, ActivationShape shape, DType compute)
{
    Activations plan;
    plan.m_shape = shape;
    Arena counter;
    plan.carve(counter, config, compute);
    return counter.used();
}

Activations::Activations(Backend& backend, const ModelConfig& config, ActivationShape shape) : m_shape(shape)
{
    const size_t bytes = plan_bytes(config, shape, backend.compute_dtype());
    m_buffer = DeviceBuffer(backend, bytes);
    Arena arena(m_buffer, backend.device());
    carve(arena, config, backend.compute_dtype());
}

} // namespace crucible
