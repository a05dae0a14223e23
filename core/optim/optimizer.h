// Optimizer: AdamW over the whole ParamStore, or Muon for the hidden 2-D
// matrices with AdamW for the rest (embeddings, head, norms), as Muon's
// authors prescribe: orthogonalised updates suit only hidden matrices.
//
// State mirrors the ParamStore layout: `m` holds AdamW's first moment or
// Muon's momentum, `v` AdamW's second moment (unused for Muon's matrices).
// Gradient clipping is folded into the step as a scale on the gradient.
#pragma once

#include "core/model/param_store.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace crucible {

enum class OptimizerType { adamw, muon };
const char* to_string(OptimizerType t);
OptimizerType optimizer_type_from_string(const std::string& s);   // throws Error

struct OptimizerConfig {
    OptimizerType type = OptimizerType::adamw;
    // AdamW (all parameters, or the non-matrix share under Muon)
    float lr = 1e-3f;
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float eps = 1e-8f;
    float weight_decay = 0.1f;     // on matrices only; norms never decay
    // Muon (hidden matrices)
    float muon_lr = 0.02f;
    float muon_momentum = 0.95f;
    bool muon_nesterov = true;
    int muon_ns_steps = 5;
    float muon_weight_decay = 0.0f;
    // Scale updates to AdamW's RMS (0.2·sqrt(max(rows, cols))) and use `lr`
    // instead of muon_lr, so one learning rate serves both.
    bool muon_match_adamw_rms = false;
    float grad_clip = 1.0f;        // global-norm clip; 0 disables

    std::vector<std::string> problems() const;
};

nlohmann::json to_json(const OptimizerConfig& c);
OptimizerConfig optimizer_config_from_json(const nlohmann::json& j);

struct OptimizerStepInfo {
    double grad_norm = 0.0;    // before clipping
    bool skipped = false;      // non-finite gradient: the step was not applied
};

class Optimizer {
public:
    Optimizer(ParamStore& params, const OptimizerConfig& config);

    const OptimizerConfig& config() const { return m_config; }
    int64_t steps_taken() const { return m_steps; }
    void set_steps_taken(int64_t steps) { m_steps = steps; }

    // Applies one update with the peak rates scaled by lr_multiplier.
    OptimizerStepInfo step(double lr_multiplier);

    Tensor first_moment() const { return m_m; }
    Tensor second_moment() const { return m_v; }
    size_t bytes() const { return m_state.bytes(); }

    // Update scale Muon applies to a [rows, cols] matrix under this config.
    float muon_update_scale(int64_t rows, int64_t cols) const;

private:
    bool uses_muon(const ParamEntry& e) const;

    ParamStore* m_params;
    OptimizerConfig m_config;
    DeviceBuffer m_state;
    Tensor m_m, m_v;
    int64_t m_steps = 0;
};

// Bytes of optimizer state for a model of `param_elements` parameters.
size_t optimizer_state_bytes(int64_t param_elements);

} // namespace crucible
