// Benchmark results shared by crucible-cli (table + JSON) and the GUI
// dashboards: named rows of numeric columns, each timing a median over
// repeats with its min and max.
#pragma once

#include "core/train/metrics.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace crucible {

class Backend;

struct Timing {
    double median_ms = 0, min_ms = 0, max_ms = 0;
    int repeats = 0;
};

// Warm up, then time `fn` `repeats` times on the backend (device events on
// CUDA via synchronize(), a steady clock on CPU) and summarise.
Timing time_repeated(Backend& backend, const std::function<void()>& fn, int warmup, int repeats);
Timing summarize(std::vector<double> samples_ms);

struct BenchColumn {
    std::string key;      // JSON key, e.g. "tokens_per_s"
    std::string title;    // table header, e.g. "tok/s"
    int precision = 1;
};

// A column of a training metric: the registry's key, header and precision;
// its values are in the metric's shown unit (MFU in percent, memory in MB).
BenchColumn metric_column(const MetricInfo& m);

struct BenchRow {
    std::string label;
    std::vector<double> values;   // one per column; NaN = not measured
};

struct BenchTable {
    std::string name;             // "train", "attention", ...
    std::string device;           // what ran it
    std::vector<BenchColumn> columns;
    std::vector<BenchRow> rows;
    std::vector<std::string> notes;

    std::string to_text() const;  // aligned table for a terminal
    nlohmann::json to_json() const;
};

} // namespace crucible
