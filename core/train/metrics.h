// The metrics registry: every number a training run records, described once.
//
// A metric has a key (its name in the Runs page's list and in code), the
// record of metrics.jsonl that holds it and its field there, a label and a
// unit for people, the scale from the recorded value to the shown one (MFU
// is recorded as a fraction and shown in percent), and how a series of it
// sums up in one number. The trainer's records, the run catalog, the Train
// and Runs pages, the CLI's progress and the benchmark tables all read this
// table, so a new metric is one row here plus where its value comes from.
#pragma once

#include "core/train/training_sink.h"

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace crucible {

enum class Metric {
    loss,                // step records
    val_loss,            // eval records
    val_perplexity,      // eval
    val_accuracy,        // eval
    val_bits_per_byte,   // eval
    lr,                  // step
    grad_norm,           // step
    tokens_per_s,        // step
    mfu,                 // step
    memory_bytes,        // step
    comm_share,          // step
};
inline constexpr size_t kMetricCount = size_t(Metric::comm_share) + 1;

// The metrics.jsonl record a metric is logged in.
enum class MetricRecord { step, eval };

// How a series of values sums up in one number (a run's summary, a table).
enum class MetricAggregation {
    last,   // the latest value: losses, the learning rate
    mean,   // rates over the run: tokens per second, MFU
    max,    // high-water marks: memory
};

// How a shown value reads best.
enum class MetricStyle {
    number,    // 3.4521
    percent,   // 41.2%
    rate,      // 21.3 K (per second)
    bytes,     // 1.2 GB (shown value in the metric's unit, MB)
};

struct MetricInfo {
    Metric id;
    std::string_view key;          // unique: "loss", "val_loss", ...
    MetricRecord record;
    std::string_view field;        // its field in the record: "loss" in both step and eval
    std::string_view label;        // "Train loss"
    std::string_view short_label;  // for table headers and progress lines: "loss", "tok/s"
    std::string_view unit;         // of the shown value: "%", "MB", "tok/s"; empty for a pure number
    double scale;                  // shown value = recorded value × scale
    int precision;                 // decimals of the shown value
    MetricAggregation aggregation;
    MetricStyle style;
    bool integral;                 // recorded as an integer (bytes)

    double shown(double recorded) const { return recorded * scale; }
    // "MFU %", "memory MB", "tok/s": the short label with the unit unless it says it.
    std::string header() const;
};

// Every metric, in the order of the Metric enum (the order lists show).
std::span<const MetricInfo> metrics();
const MetricInfo& metric_info(Metric m);
// nullptr when no metric has this key.
const MetricInfo* find_metric(std::string_view key);

// The recorded value of a metric of the matching record.
double metric_value(Metric m, const StepMetrics& s);
double metric_value(Metric m, const EvalMetrics& e);

// The registry's fields of a step or an eval record, {"loss": ..., ...}: what
// metrics.jsonl and the CLI's --json events hold besides their axes.
nlohmann::json metric_fields(const StepMetrics& s);
nlohmann::json metric_fields(const EvalMetrics& e);

// Sums up values of a metric (recorded units) by its aggregation; 0 for none.
double aggregate(const MetricInfo& m, std::span<const double> values);

} // namespace crucible
