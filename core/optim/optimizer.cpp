#include "core/optim/optimizer.h"

#include "core/util/json_read.h"
#include "kernels/error.h"

#include <algorithm>
#include <cmath>

namespace crucible {

const char* to_string(OptimizerType t) { return t == OptimizerType::adamw ? "adamw" : "muon"; }

OptimizerType optimizer_type_from_string(const std::string& s)
{
    if (s == "adamw") return OptimizerType::adamw;
    if (s == "muon") return OptimizerType::muon;
    throw Error("optimizer must be adamw or muon, got \"" + s + "\"");
}

std::vector<std::string> OptimizerConfig::problems() const
{
    std::vector<std::string> p;
    auto need = [&](bool ok, const char* msg) { if (!ok) p.emplace_back(msg); };
    need(lr > 0.0f && lr < 10.0f, "learning rate must be in (0, 10)");
    need(beta1 >= 0.0f && beta1 < 1.0f, "beta1 must be in [0, 1)");
    need(beta2 >= 0.0f && beta2 < 1.0f, "beta2 must be in [0, 1)");
    need(eps > 0.0f, "epsilon must be positive");
    need(weight_decay >= 0.0f && weight_decay < 10.0f, "weight decay must be in [0, 10)");
    need(grad_clip >= 0.0f, "gradient clip must be 0 (off) or positive");
    if (type == OptimizerType::muon) {
        need(muon_lr > 0.0f && muon_lr < 10.0f, "Muon learning rate must be in (0, 10)");
        need(muon_momentum >= 0.0f && muon_momentum < 1.0f, "Muon momentum must be in [0, 1)");
        need(muon_ns_steps >= 1 && muon_ns_steps <= 20, "Newton–Schulz steps must be between 1 and 20");
        need(muon_weight_decay >= 0.0f && muon_weight_decay < 10.0f, "Muon weight decay must be in [0, 10)");
    }
    return p;
}

nlohmann::json to_json(const OptimizerConfig& c)
{
    return {{"type", to_string(c.type)},         {"lr", c.lr},
            {"beta1", c.beta1},                  {"beta2", c.beta2},
            {"eps", c.eps},                      {"weight_decay", c.weight_decay},
            {"muon_lr", c.muon_lr},              {"muon_momentum", c.muon_momentum},
            {"muon_nesterov", c.muon_nesterov},  {"muon_ns_steps", c.muon_ns_steps},
            {"muon_weight_decay", c.muon_weight_decay},
            {"muon_match_adamw_rms", c.muon_match_adamw_rms},
            {"grad_clip", c.grad_clip}};
}

OptimizerConfig optimizer_config_from_json(const nlohmann::json& j)
{
    JsonReader r(j, "optimizer",
                 {"type", "lr", "beta1", "beta2", "eps", "weight_decay", "muon_lr", "muon_momentum",
                  "muon_nesterov", "muon_ns_steps", "muon_weight_decay", "muon_match_adamw_rms", "grad_clip"});
    OptimizerConfig c;
    std::string type = to_string(c.type);
    r.read("type", type);
    c.type = optimizer_type_from_string(type);
    r.read("lr", c.lr);
    r.read("beta1", c.beta1);
    r.read("beta2", c.beta2);
    r.read("eps", c.eps);
    r.read("weight_decay", c.weight_decay);
    r.read("muon_lr", c.muon_lr);
    r.read("muon_momentum", c.muon_momentum);
    r.read("muon_nesterov", c.muon_nesterov);
    r.read("muon_ns_steps", c.muon_ns_steps);
    r.read("muon_weight_decay", c.muon_weight_decay);
    r.read("muon_match_adamw_rms", c.muon_match_adamw_rms);
    r.read("grad_clip", c.grad_clip);
    return c;
}

size_t optimizer_state_bytes(int64_t param_elements) { return 2 * dtype_bytes(DType::f32, param_elements); }

Optimizer::Optimizer(ParamStore& params, const OptimizerConfig& config) : m_params(&params), m_config(config)
{
    const auto p = config.problems();
    if (!p.empty()) throw Error("invalid optimizer settings: " + p.front());
    const int64_t n = params.layout().total();
    Backend& be = params.backend();
    m_state = DeviceBuffer(be, optimizer_state_bytes(n));
    m_m = m_state.tensor(DType::f32, Shape{n});
    m_v = Tensor(static_cast<char*>(m_state.data()) + dtype_bytes(DType::f32, n), DType::f32, Shape{n}, be.device());
    be.fill(m_m, 0.0f);
    be.fill(m_v, 0.0f);
}

bool Optimizer::uses_muon(const ParamEntry& e) const
{
    return m_config.type == OptimizerType::muon && e.is_hidden_matrix();
}

float Optimizer::muon_update_scale(int64_t rows, int64_t cols) const
{
    if (m_config.muon_match_adamw_rms) return 0.2f * std::sqrt(float(std::max(rows, cols)));
    return std::sqrt(std::max(1.0f, float(rows) / float(cols)));
}

OptimizerStepInfo Optimizer::step(double lr_multiplier)
{
    Backend& be = m_params->backend();
    OptimizerStepInfo info;
    info.grad_norm = std::sqrt(be.sum_squares(m_params->grads()));
    if (!std::isfinite(info.grad_norm)) {
        info.skipped = true;
        return info;
    }
    float grad_scale = 1.0f;
    if (m_config.grad_clip > 0.0f && info.grad_norm > m_config.grad_clip)
        grad_scale = float(m_config.grad_clip / info.grad_norm);
    ++m_steps;

    const ParamLayout& layout = m_params->layout();
    const bool mirror = m_params->compute().data != m_params->master().data;
    AdamWHyper adam;
    adam.lr = float(m_config.lr * lr_multiplier);
    adam.beta1 = m_config.beta1;
    adam.beta2 = m_config.beta2;
    adam.eps = m_config.eps;
    adam.grad_scale = grad_scale;
    adam.step = m_steps;
    for (const ParamEntry& e : layout.entries()) {
        if (uses_muon(e)) continue;
        adam.weight_decay = e.decays() ? m_config.weight_decay : 0.0f;
        be.adamw_step(m_params->master(e), mirror ? m_params->compute(e) : Tensor(), m_params->grad(e),
                      param_view(m_m, e), param_view(m_v, e), adam);
    }
    if (m_config.type == OptimizerType::muon) {
        // One batched call per kind of hidden matrix: layer l's copy sits
        // layer_stride elements after layer l-1's.
        const ModelConfig& c = layout.config();
        for (ParamRole role : {ParamRole::q_proj, ParamRole::k_proj, ParamRole::v_proj, ParamRole::o_proj,
                               ParamRole::gate_proj, ParamRole::up_proj, ParamRole::down_proj}) {
            if (role == ParamRole::gate_proj && c.mlp != MlpType::swiglu) continue;
            const ParamEntry& first = layout.at(role, 0);
            MuonHyper h;
            h.lr = float((m_config.muon_match_adamw_rms ? m_config.lr : m_config.muon_lr) * lr_multiplier);
            h.momentum = m_config.muon_momentum;
            h.weight_decay = m_config.muon_weight_decay;
            h.nesterov = m_config.muon_nesterov;
            h.ns_steps = m_config.muon_ns_steps;
            h.grad_scale = grad_scale;
            h.update_scale = muon_update_scale(first.shape[0], first.shape[1]);
            be.muon_step(m_params->master(first), mirror ? m_params->compute(first) : Tensor(),
                         m_params->grad(first), param_view(m_m, first), c.n_layers, layout.layer_stride(), h);
        }
    }
    return info;
}

} // namespace crucible
