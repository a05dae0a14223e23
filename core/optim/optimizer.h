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
#include <optional>
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

// A contiguous stretch [begin, end) of the parameter layout, in elements.
// An optimizer owns one: everything, or under ZeRO stage 1 one data-parallel
// replica's share, whose optimizer state it alone holds and whose weights it
// alone updates (then sends to the others).
struct ParamRange {
    int64_t begin = 0, end = 0;
    int64_t size() const { return end - begin; }
    bool contains(const ParamEntry& e) const { return e.offset >= begin && e.offset + e.numel() <= end; }
    bool operator==(const ParamRange&) const = default;
};

// Splits the layout into `world` ranges of whole tensors with about the same
// number of elements each, in layout order. A matrix is never split: Muon
// orthogonalises each one whole, once, on its owner. With more replicas than
// tensors some ranges are empty.
std::vector<ParamRange> shard_ranges(const ParamLayout& layout, int world);

// An optimizer's state on the host, laid out like the parameters: what a
// checkpoint holds. Ranges an optimizer does not own are zero.
struct OptimizerSnapshot {
    OptimizerConfig config;
    int64_t steps = 0;
    std::vector<float> m, v;
};

struct OptimizerStepInfo {
    double grad_norm = 0.0;    // before clipping
    bool skipped = false;      // non-finite gradient: the step was not applied
};

class Optimizer {
public:
    // Owns `owned` of the layout (default: all of it).
    Optimizer(ParamStore& params, const OptimizerConfig& config, std::optional<ParamRange> owned = std::nullopt);

    const OptimizerConfig& config() const { return m_config; }
    int64_t steps_taken() const { return m_steps; }
    void set_steps_taken(int64_t steps) { m_steps = steps; }

    // Applies one update with the peak rates scaled by lr_multiplier to the
    // owned weights. The gradient norm (and so clipping and skipping) is that
    // of all the gradients, the same on every replica.
    OptimizerStepInfo step(double lr_multiplier);

    ParamRange owned() const { return m_owned; }
    // The owned range's state, [owned().size()] each.
    Tensor first_moment() const { return m_m; }
    Tensor second_moment() const { return m_v; }
    // The state as a whole-layout snapshot (zero outside the owned range).
    OptimizerSnapshot snapshot() const;
    // Takes the owned range's state and the step count from a snapshot.
    void restore(const OptimizerSnapshot& snapshot);
    // The owned range's moments into / from whole-layout host arrays.
    void download_state(float* m, float* v) const;
    void upload_state(const float* m, const float* v);
    size_t bytes() const { return m_state.bytes(); }

    // Update scale Muon applies to a [rows, cols] matrix under this config.
    float muon_update_scale(int64_t rows, int64_t cols) const;

private:
    bool uses_muon(const ParamEntry& e) const;
    // The owned state of tensor `e` (which must be owned).
    Tensor state_view(const Tensor& state, const ParamEntry& e) const;

    ParamStore* m_params;
    OptimizerConfig m_config;
    ParamRange m_owned;
    DeviceBuffer m_state;
    Tensor m_m, m_v;
    int64_t m_steps = 0;
};

// Bytes of optimizer state for `param_elements` owned parameters.
size_t optimizer_state_bytes(int64_t param_elements);

} // namespace crucible
