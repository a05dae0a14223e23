#include "core/model/param_store.h"

#include "core/util/rng.h"

#include <cmath>

namespace crucible {

ParamStore::ParamStore(Backend& backend, const ModelConfig& config, bool with_grads, bool keep_master)
    : ParamStore(backend, ParamLayout(config), with_grads, keep_master)
{
}

ParamStore::ParamStore(Backend& backend, ParamLayout layout, bool with_grads, bool keep_master)
    : m_backend(&backend), m_layout(std::move(layout))
{
    const int64_t n = m_layout.total();
    const bool mirror = backend.compute_dtype() != DType::f32;
    CRUCIBLE_CHECK(keep_master || !with_grads, "a store that trains needs its f32 master weights");
    if (keep_master || !mirror) {
        m_master_buffer = DeviceBuffer(backend, dtype_bytes(DType::f32, n));
        m_master = m_master_buffer.tensor(DType::f32, Shape{n});
    }
    if (!mirror) {
        m_compute = m_master;
    } else {
        m_compute_buffer = DeviceBuffer(backend, dtype_bytes(backend.compute_dtype(), n));
        m_compute = m_compute_buffer.tensor(backend.compute_dtype(), Shape{n});
    }
    if (with_grads) {
        m_grad_buffer = DeviceBuffer(backend, dtype_bytes(DType::f32, n));
        m_grads = m_grad_buffer.tensor(DType::f32, Shape{n});
    }
    // Padding between tensors stays zero forever.
    backend.fill(m_master.empty() ? m_compute : m_master, 0.0f);
    if (!m_grads.empty()) backend.fill(m_grads, 0.0f);
}

void ParamStore::initialize(uint64_t seed)
{
    const ModelConfig& c = config();
    std::vector<float> host(static_cast<size_t>(m_layout.total()), 0.0f);
    Rng rng(seed);
    const double residual_scale = 1.0 / std::sqrt(2.0 * c.n_layers);
    for (const auto& e : m_layout.entries()) {
        float* p = host.data() + e.offset;
        switch (e.role) {
        case ParamRole::attn_norm: case ParamRole::mlp_norm: case ParamRole::final_norm:
        case ParamRole::q_norm: case ParamRole::k_norm:
            for (int64_t i = 0; i < e.numel(); ++i) p[i] = 1.0f;
            break;
        case ParamRole::attn_norm_bias: case ParamRole::mlp_norm_bias: case ParamRole::final_norm_bias:
            break;
        default: {
            double std = c.init_std;
            if (e.role == ParamRole::o_proj || e.role == ParamRole::down_proj) std *= residual_scale;
            for (int64_t i = 0; i < e.numel(); ++i) p[i] = static_cast<float>(rng.normal() * std);
        }
        }
    }
    upload_master(host);
}

void ParamStore::zero_grads()
{
    if (!m_grads.empty()) m_backend->fill(m_grads, 0.0f);
}

void ParamStore::sync_compute()
{
    if (!m_master.empty() && m_compute.data != m_master.data) m_backend->convert(m_compute, m_master);
}

std::vector<float> ParamStore::download_master() const
{
    const Tensor weights = m_master.empty() ? m_compute : m_master;
    std::vector<float> host(static_cast<size_t>(weights.numel()));
    m_backend->download(host.data(), DType::f32, weights);
    return host;
}

void ParamStore::upload_master(const std::vector<float>& host)
{
    const Tensor weights = m_master.empty() ? m_compute : m_master;
    CRUCIBLE_CHECK(int64_t(host.size()) == weights.numel(), "parameter vector has the wrong size");
    m_backend->upload(weights, host.data(), DType::f32);
    sync_compute();
}

std::vector<float> ParamStore::download_grads() const
{
    CRUCIBLE_CHECK(!m_grads.empty(), "this ParamStore has no gradients");
    std::vector<float> host(static_cast<size_t>(m_grads.numel()));
    m_backend->download(host.data(), DType::f32, m_grads);
    return host;
}

size_t ParamStore::bytes() const
{
    return m_master_buffer.bytes() + m_compute_buffer.bytes() + m_grad_buffer.bytes();
}

} // namespace crucible
