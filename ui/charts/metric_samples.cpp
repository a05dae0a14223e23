#include "ui/charts/metric_samples.h"

#include "ui/format.h"

namespace crucible::ui {

QString formatMetric(const MetricInfo& m, double shown)
{
    switch (m.style) {
    case MetricStyle::percent: return QString::number(shown, 'f', m.precision) + QLatin1Char('%');
    case MetricStyle::rate: return formatRate(shown);
    case MetricStyle::bytes: return formatBytes(shown / m.scale);
    case MetricStyle::number: break;
    }
    return formatNumber(shown, 4);
}

std::vector<ChartSample> metricSamples(const MetricInfo& m, const MetricSeries& series)
{
    std::vector<ChartSample> samples(series.size());
    for (size_t i = 0; i < series.size(); ++i) samples[i] = {series.step[i], series.time_s[i], m.shown(series.value[i])};
    return samples;
}

ChartSample metricSample(const MetricInfo& m, const StepMetrics& step)
{
    return {double(step.step), step.elapsed_s, m.shown(metric_value(m.id, step))};
}

} // namespace crucible::ui
