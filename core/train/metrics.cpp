#include "core/train/metrics.h"

#include "kernels/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>

namespace crucible {

namespace {

using A = MetricAggregation;
using R = MetricRecord;
using S = MetricStyle;

// One row per metric, in the order of the enum.
constexpr std::array<MetricInfo, kMetricCount> kMetrics = {{
    {Metric::loss, "loss", R::step, "loss", "Train loss", "loss", "", 1.0, 4, A::last, S::number, false},
    {Metric::val_loss, "val_loss", R::eval, "loss", "Validation loss", "val loss", "", 1.0, 4, A::last, S::number, false},
    {Metric::val_perplexity, "val_perplexity", R::eval, "perplexity", "Validation perplexity", "ppl", "", 1.0, 2, A::last, S::number, false},
    {Metric::val_accuracy, "val_accuracy", R::eval, "accuracy", "Validation accuracy", "acc", "%", 100.0, 1, A::last, S::percent, false},
    {Metric::val_bits_per_byte, "val_bits_per_byte", R::eval, "bits_per_byte", "Bits per byte", "bits/byte", "", 1.0, 3, A::last, S::number, false},
    {Metric::lr, "lr", R::step, "lr", "Learning rate", "lr", "", 1.0, 6, A::last, S::number, false},
    {Metric::grad_norm, "grad_norm", R::step, "grad_norm", "Gradient norm", "grad", "", 1.0, 2, A::last, S::number, false},
    {Metric::tokens_per_s, "tokens_per_s", R::step, "tokens_per_s", "Tokens per second", "tok/s", "tok/s", 1.0, 0, A::mean, S::rate, false},
    {Metric::mfu, "mfu", R::step, "mfu", "MFU", "MFU", "%", 100.0, 1, A::mean, S::percent, false},
    {Metric::memory_bytes, "memory_bytes", R::step, "memory_bytes", "Memory", "memory", "MB", 1e-6, 0, A::max, S::bytes, true},
    {Metric::comm_share, "comm_share", R::step, "comm_share", "Share of the step in gradient exchange", "comm", "%", 100.0, 1, A::mean, S::percent, false},
}};

constexpr bool rows_in_enum_order()
{
    for (size_t i = 0; i < kMetrics.size(); ++i)
        if (size_t(kMetrics[i].id) != i) return false;
    return true;
}
static_assert(rows_in_enum_order(), "kMetrics rows must follow the order of enum Metric");

} // namespace

std::span<const MetricInfo> metrics() { return kMetrics; }

std::string MetricInfo::header() const
{
    if (unit.empty() || unit == short_label) return std::string(short_label);
    return std::string(short_label) + " " + std::string(unit);
}

const MetricInfo& metric_info(Metric m) { return kMetrics[size_t(m)]; }

const MetricInfo* find_metric(std::string_view key)
{
    for (const MetricInfo& m : kMetrics)
        if (m.key == key) return &m;
    return nullptr;
}

double metric_value(Metric m, const StepMetrics& s)
{
    switch (m) {
    case Metric::loss: return s.loss;
    case Metric::lr: return s.lr;
    case Metric::grad_norm: return s.grad_norm;
    case Metric::tokens_per_s: return s.tokens_per_s;
    case Metric::mfu: return s.mfu;
    case Metric::memory_bytes: return double(s.memory_bytes);
    case Metric::comm_share: return s.comm_share;
    default: break;
    }
    throw Error(std::string(metric_info(m).key) + " is not recorded per step");
}

double metric_value(Metric m, const EvalMetrics& e)
{
    switch (m) {
    case Metric::val_loss: return e.loss;
    case Metric::val_perplexity: return e.perplexity;
    case Metric::val_accuracy: return e.accuracy;
    case Metric::val_bits_per_byte: return e.bits_per_byte;
    default: break;
    }
    throw Error(std::string(metric_info(m).key) + " is not recorded per evaluation");
}

namespace {

nlohmann::json fields_of(MetricRecord record, auto&& value_of)
{
    nlohmann::json j = nlohmann::json::object();
    for (const MetricInfo& m : kMetrics) {
        if (m.record != record) continue;
        const double v = value_of(m.id);
        if (m.integral) j[std::string(m.field)] = int64_t(v);
        else j[std::string(m.field)] = v;
    }
    return j;
}

} // namespace

nlohmann::json metric_fields(const StepMetrics& s)
{
    return fields_of(MetricRecord::step, [&](Metric id) { return metric_value(id, s); });
}

nlohmann::json metric_fields(const EvalMetrics& e)
{
    return fields_of(MetricRecord::eval, [&](Metric id) { return metric_value(id, e); });
}

double aggregate(const MetricInfo& m, std::span<const double> values)
{
    if (values.empty()) return 0.0;
    switch (m.aggregation) {
    case MetricAggregation::last: return values.back();
    case MetricAggregation::mean: return std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
    case MetricAggregation::max: return *std::max_element(values.begin(), values.end());
    }
    return values.back();
}

} // namespace crucible
