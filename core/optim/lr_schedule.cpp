#include "core/optim/lr_schedule.h"

#include "core/util/json_read.h"
#include "kernels/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

namespace crucible {

const char* to_string(ScheduleKind k)
{
    switch (k) {
    case ScheduleKind::constant: return "constant";
    case ScheduleKind::cosine: return "cosine";
    case ScheduleKind::wsd: return "wsd";
    }
    return "?";
}

ScheduleKind schedule_kind_from_string(const std::string& s)
{
    if (s == "constant") return ScheduleKind::constant;
    if (s == "cosine") return ScheduleKind::cosine;
    if (s == "wsd") return ScheduleKind::wsd;
    throw Error("schedule must be constant, cosine or wsd, got \"" + s + "\"");
}

std::string ScheduleConfig::problems(int total_steps) const
{
    if (warmup_steps < 0) return "warmup steps must be 0 or more";
    if (warmup_steps > total_steps) return "warmup steps (" + std::to_string(warmup_steps) +
                                           ") exceed the total steps (" + std::to_string(total_steps) + ")";
    if (!(min_lr_ratio >= 0.0f && min_lr_ratio <= 1.0f)) return "the minimum LR ratio must be between 0 and 1";
    if (!(decay_fraction > 0.0f && decay_fraction <= 1.0f)) return "the WSD decay fraction must be in (0, 1]";
    return {};
}

double lr_multiplier(const ScheduleConfig& c, int64_t step, int64_t total)
{
    total = std::max<int64_t>(total, 1);
    if (c.warmup_steps > 0 && step < c.warmup_steps) return double(step + 1) / double(c.warmup_steps);
    const double floor = c.min_lr_ratio;
    switch (c.kind) {
    case ScheduleKind::constant:
        return 1.0;
    case ScheduleKind::cosine: {
        const int64_t span = std::max<int64_t>(total - c.warmup_steps, 1);
        const double t = std::clamp(double(step - c.warmup_steps) / double(span), 0.0, 1.0);
        return floor + (1.0 - floor) * 0.5 * (1.0 + std::cos(M_PI * t));
    }
    case ScheduleKind::wsd: {
        const int64_t decay_steps = std::max<int64_t>(int64_t(std::ceil(c.decay_fraction * double(total))), 1);
        const int64_t decay_start = total - decay_steps;
        if (step < decay_start) return 1.0;
        const double t = std::clamp(double(step - decay_start + 1) / double(decay_steps), 0.0, 1.0);
        return 1.0 - (1.0 - floor) * t;
    }
    }
    return 1.0;
}

nlohmann::json to_json(const ScheduleConfig& c)
{
    return {{"kind", to_string(c.kind)},
            {"warmup_steps", c.warmup_steps},
            {"min_lr_ratio", c.min_lr_ratio},
            {"decay_fraction", c.decay_fraction}};
}

ScheduleConfig schedule_config_from_json(const nlohmann::json& j)
{
    JsonReader r(j, "schedule", {"kind", "warmup_steps", "min_lr_ratio", "decay_fraction"});
    ScheduleConfig c;
    std::string kind = to_string(c.kind);
    r.read("kind", kind);
    c.kind = schedule_kind_from_string(kind);
    r.read("warmup_steps", c.warmup_steps);
    r.read("min_lr_ratio", c.min_lr_ratio);
    r.read("decay_fraction", c.decay_fraction);
    return c;
}

} // namespace crucible
