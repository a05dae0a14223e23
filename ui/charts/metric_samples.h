// Registry metrics as chart points and text: the one place where a recorded
// value becomes what a chart or a label shows (scaled by the registry, read
// in the metric's style), for the Train page's live steps, a run's history
// and the Runs page's comparison alike.
#pragma once

#include "core/train/metrics.h"
#include "core/train/run_catalog.h"
#include "ui/charts/sample_ring.h"

#include <QString>

#include <vector>

namespace crucible::ui {

// A shown value (recorded × scale) as text: "41.2%", "21.3 K", "1.2 GB", "3.452".
QString formatMetric(const MetricInfo& m, double shown);

// The points of a recorded series, in shown units.
std::vector<ChartSample> metricSamples(const MetricInfo& m, const MetricSeries& series);

// One step's point of a per-step metric, in shown units.
ChartSample metricSample(const MetricInfo& m, const StepMetrics& step);

} // namespace crucible::ui
