// Learning-rate schedules, as a multiplier of the peak rate for each step.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>

namespace crucible {

enum class ScheduleKind {
    constant,   // linear warmup, then flat
    cosine,     // linear warmup, then cosine decay to min_lr_ratio
    wsd,        // warmup-stable-decay: flat, then linear decay over the last decay_fraction
};

struct ScheduleConfig {
    ScheduleKind kind = ScheduleKind::cosine;
    int warmup_steps = 20;
    float min_lr_ratio = 0.1f;     // floor of the decay, as a fraction of the peak
    float decay_fraction = 0.2f;   // WSD only

    std::string problems(int total_steps) const;   // empty when valid
};

const char* to_string(ScheduleKind k);
ScheduleKind schedule_kind_from_string(const std::string& s);   // throws Error

// step is 0-based; total_steps ≥ 1.
double lr_multiplier(const ScheduleConfig& config, int64_t step, int64_t total_steps);

nlohmann::json to_json(const ScheduleConfig& c);
ScheduleConfig schedule_config_from_json(const nlohmann::json& j);

} // namespace crucible
