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

std::vector<ParamRange> shard_ranges(const ParamLayout& layout, int world)
{
    CRUCIBLE_REQUIRE(world >= 1, "the optimizer state needs at least one replica to live on");
    std::vector<ParamRange> ranges;
    const auto& entries = layout.entries();
    size_t next = 0;
    int64_t begin = 0;
    for (int r = 0; r < world; ++r) {
        // Take tensors until this range reaches its share of what is left.
        const int64_t target = (layout.total() - begin) / (world - r);
        int64_t end = begin;
        while (next < entries.size() && (end - begin < target || r == world - 1)) {
            const ParamEntry& e = entries[next];
            // Stop before a tensor that overshoots the share by more than it undershoots.
            const int64_t with = e.offset + e.numel() - begin;
            if (end > begin && r < world - 1 && with - target > target - (end - begin)) break;
            end = e.offset + e.numel();
            ++next;
        }
        if (r == world - 1) end = layout.total();
        ranges.push_back({begin, end});
        begin = end;
    }
    return ranges;
}

Optimizer::Optimizer(ParamStore& params, const OptimizerConfig& config, std::optional<ParamRange> owned)
    : m_params(&params), m_config(config), m_owned(owned.value_or(ParamRange{0, params.layout().total()}))
{
    const auto p = config.problems();
    if (!p.empty()) throw Error("invalid optimizer settings: " + p.front());
    CRUCIBLE_CHECK(m_owned.begin >= 0 && m_owned.begin <= m_owned.end && m_owned.end <= params.layout().total(),
                   "the optimizer's range lies outside the parameters");
    for (const ParamEntry& e : params.layout().entries()) {
        const bool overlaps = e.offset < m_owned.end && e.offset + e.numel() > m_owned.begin;
        CRUCIBLE_CHECK(!overlaps || m_owned.contains(e), "an optimizer range must hold whole tensors: " + e.name);
    }
    const int64_t n = m_owned.size();
    Backend& be = params.backend();
    m_state = DeviceBuffer(be, optimizer_state_bytes(n));
    m_m = m_state.tensor(DType::f32, Shape{n});
    m_v = Tensor(static_cast<char*>(m_state.data()) + dtype_bytes(DType::f32, n), DType::f32, Shape{n}, be.device());
    if (n == 0) return;   // a replica that owns nothing (more replicas than tensors)
    be.fill(m_m, 0.0f);
    be.fill(m_v, 0.0f);
}

Tensor Optimizer::state_view(const Tensor& state, const ParamEntry& e) const
{
    return state.sub(e.offset - m_owned.begin, e.shape);
}

OptimizerSnapshot Optimizer::snapshot() const
{
    OptimizerSnapshot s;
    s.config = m_config;
    s.steps = m_steps;
    s.m.assign(size_t(m_params->layout().total()), 0.0f);
    s.v.assign(s.m.size(), 0.0f);
    download_state(s.m.data(), s.v.data());
    return s;
}

void Optimizer::restore(const OptimizerSnapshot& s)
{
    const size_t total = size_t(m_params->layout().total());
    CRUCIBLE_CHECK(s.m.size() == total && s.v.size() == total, "an optimizer snapshot of another model");
    upload_state(s.m.data(), s.v.data());
    m_steps = s.steps;
}

void Optimizer::download_state(float* m, float* v) const
{
    if (m_owned.size() == 0) return;
    Backend& be = m_params->backend();
    be.download(m + m_owned.begin, DType::f32, m_m);
    be.download(v + m_owned.begin, DType::f32, m_v);
}

void Optimizer::upload_state(const float* m, const float* v)
{
    if (m_owned.size() == 0) return;
    Backend& be = m_params->backend();
    be.upload(m_m, m + m_owned.begin, DType::f32);
    be.upload(m_v, v + m_owned.begin, DType::f32);
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
        if (uses_muon(e) || !m_owned.contains(e)) continue;
        adam.weight_decay = e.decays() ? m_config.weight_decay : 0.0f;
        be.adamw_step(m_params->master(e), mirror ? m_params->compute(e) : Tensor(), m_params->grad(e),
                      state_view(m_m, e), state_view(m_v, e), adam);
    }
    if (m_config.type == OptimizerType::muon) {
        // One batched call per kind of hidden matrix: layer l's copy sits
        // layer_stride elements after layer l-1's.
        const ModelConfig& c = layout.config();
        for (ParamRole role : {ParamRole::q_proj, ParamRole::k_proj, ParamRole::v_proj, ParamRole::o_proj,
                               ParamRole::gate_proj, ParamRole::up_proj, ParamRole::down_proj}) {
            if (role == ParamRole::gate_proj && c.mlp != MlpType::swiglu) continue;
            // The owned layers of this kind are consecutive (the range is).
            int first_layer = -1, layers = 0;
            for (int l = 0; l < c.n_layers; ++l) {
                if (!m_owned.contains(layout.at(role, l))) continue;
                if (first_layer < 0) first_layer = l;
                ++layers;
            }
            if (layers == 0) continue;
            const ParamEntry& first = layout.at(role, first_layer);
            MuonHyper h;
            h.lr = float((m_config.muon_match_adamw_rms ? m_config.lr : m_config.muon_lr) * lr_multiplier);
            h.momentum = m_config.muon_momentum;
            h.weight_decay = m_config.muon_weight_decay;
            h.nesterov = m_config.muon_nesterov;
            h.ns_steps = m_config.muon_ns_steps;
            h.grad_scale = grad_scale;
            h.update_scale = muon_update_scale(first.shape[0], first.shape[1]);
            be.muon_step(m_params->master(first), mirror ? m_params->compute(first) : Tensor(),
                         m_params->grad(first), state_view(m_m, first), layers, layout.layer_stride(), h);
        }
    }
    return info;
}

} // namespace crucible
