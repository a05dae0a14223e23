#include "ui/pages/benchmark_charts.h"

#include "ui/charts/live_chart.h"
#include "ui/format.h"
#include "ui/theme.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QStackedWidget>
#include <QVBoxLayout>

#include <algorithm>

namespace crucible::ui {

namespace {

// "D=64 · pass=fwd": the tags that set a chart apart, as its title shows them.
QString tagText(const std::map<std::string, std::string>& tags)
{
    QStringList parts;
    for (const auto& [k, v] : tags) parts << QStringLiteral("%1=%2").arg(qs(k), qs(v));
    return parts.join(QStringLiteral(" · "));
}

} // namespace

struct BenchmarkCharts::Plot {
    std::string suite, metric, xName;
    std::map<std::string, std::string> tags;
    bench::LimitKind limit = bench::LimitKind::none;
    LiveChart* chart = nullptr;
    // Each line's points by x (sorted), and the line's index in the chart.
    std::map<QString, int> seriesIndex;
    std::vector<std::map<double, double>> points;
    int limitSeries = -1;
};

BenchmarkCharts::BenchmarkCharts(QWidget* parent) : QWidget(parent)
{
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* row = new QHBoxLayout;
    auto* label = new QLabel(tr("Chart"), this);
    m_picker = new QComboBox(this);
    m_picker->setObjectName(QStringLiteral("benchChartPicker"));
    m_picker->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_picker->setMinimumContentsLength(30);
    row->addWidget(label);
    row->addWidget(m_picker, 1);
    layout->addLayout(row);
    m_stack = new QStackedWidget(this);
    m_empty = new QLabel(tr("Pick suites and press Run, or open a saved results file: each measured point "
                            "appears here as it arrives."),
                         m_stack);
    m_empty->setAlignment(Qt::AlignCenter);
    m_empty->setWordWrap(true);
    m_empty->setProperty("role", "caption");
    m_stack->addWidget(m_empty);
    layout->addWidget(m_stack, 1);
    connect(m_picker, &QComboBox::currentIndexChanged, this, [this](int i) {
        m_stack->setCurrentIndex(i < 0 ? 0 : i + 1);
        emit currentChartChanged(i);
    });
}

BenchmarkCharts::~BenchmarkCharts() = default;

void BenchmarkCharts::clear()
{
    m_picker->clear();
    for (auto& p : m_charts) {
        m_stack->removeWidget(p->chart);
        p->chart->deleteLater();
    }
    m_charts.clear();
    m_stack->setCurrentIndex(0);
}

LiveChart* BenchmarkCharts::chartAt(int index) const
{
    return index >= 0 && index < chartCount() ? m_charts[size_t(index)]->chart : nullptr;
}

LiveChart* BenchmarkCharts::currentChart() const { return chartAt(m_picker->currentIndex()); }
int BenchmarkCharts::currentIndex() const { return m_picker->currentIndex(); }
void BenchmarkCharts::selectChart(int index) { m_picker->setCurrentIndex(index); }

int BenchmarkCharts::limitSeries(int chart) const
{
    return chart >= 0 && chart < chartCount() ? m_charts[size_t(chart)]->limitSeries : -1;
}

bool BenchmarkCharts::selectChart(const std::string& suite, const std::string& metric,
                                  const std::map<std::string, std::string>& tags)
{
    int exact = -1, sameMetric = -1, sameSuite = -1;
    for (int i = 0; i < chartCount(); ++i) {
        const Plot& p = *m_charts[size_t(i)];
        if (p.suite != suite) continue;
        if (sameSuite < 0) sameSuite = i;
        if (p.metric != metric) continue;
        if (sameMetric < 0) sameMetric = i;
        if (p.tags == tags && exact < 0) exact = i;
    }
    const int pick = exact >= 0 ? exact : sameMetric >= 0 ? sameMetric : sameSuite;
    if (pick < 0) return false;
    m_picker->setCurrentIndex(pick);
    return true;
}

BenchmarkCharts::Plot& BenchmarkCharts::plotFor(const bench::SuiteInfo& suite, const bench::ChartInfo& info,
                                                const bench::Row& row)
{
    for (auto& p : m_charts)
        if (p->suite == suite.id && p->metric == info.metric && p->tags == row.tags && p->xName == row.x_name)
            return *p;

    auto p = std::make_unique<Plot>();
    p->suite = suite.id;
    p->metric = info.metric;
    p->tags = row.tags;
    p->xName = row.x_name;
    p->limit = info.limit;
    QString tags = tagText(row.tags);
    // One metric over two axes (bits/byte over steps and over seconds): two charts, named by their axis.
    if (!row.x_name.empty() && row.x_name != suite.x_name)
        tags = tags.isEmpty() ? tr("over %1").arg(qs(row.x_name)) : tr("%1 · over %2").arg(tags, qs(row.x_name));
    const QString title = tags.isEmpty() ? qs(info.title) : QStringLiteral("%1 · %2").arg(qs(info.title), tags);
    auto* chart = new LiveChart(info.y_unit.empty() ? title : QStringLiteral("%1 (%2)").arg(title, qs(info.y_unit)),
                                m_stack);
    chart->setObjectName(QStringLiteral("benchChart"));
    const std::string xName = row.x_name.empty() ? suite.x_name : row.x_name;
    chart->setXLabel(row.x_unit.empty() ? qs(xName) : QStringLiteral("%1 (%2)").arg(qs(xName), qs(row.x_unit)));
    chart->setLogX(info.log_x);
    chart->setLogY(info.log_y);
    chart->setSmoothingControlVisible(false);
    const QString unit = qs(info.y_unit);
    chart->setValueFormatter([unit](double v) {
        if (unit == QLatin1String("bytes")) return formatBytes(v);
        return unit.isEmpty() ? formatNumber(v) : QStringLiteral("%1 %2").arg(formatNumber(v), unit);
    });
    chart->setPlaceholderText(tr("Waiting for the first point"));
    p->chart = chart;
    m_stack->addWidget(chart);
    m_charts.push_back(std::move(p));
    updateLimit(*m_charts.back());
    m_picker->addItem(QStringLiteral("%1 — %2").arg(qs(suite.title), title));
    if (m_picker->currentIndex() < 0) m_picker->setCurrentIndex(0);
    return *m_charts.back();
}

int BenchmarkCharts::seriesFor(Plot& plot, const bench::SuiteInfo& suite, const QString& name, const QString& suffix)
{
    const QString key = name + suffix;
    if (const auto it = plot.seriesIndex.find(key); it != plot.seriesIndex.end()) return it->second;
    // Colours follow the suite's legend order, so a series keeps its colour
    // on every chart; a compared file's lines take the palette's far end.
    const auto known = std::find(suite.series.begin(), suite.series.end(), name.toStdString());
    int colour = known != suite.series.end() ? int(known - suite.series.begin()) : int(plot.seriesIndex.size());
    if (!suffix.isEmpty()) colour += 4;
    const int index = plot.chart->addSeries(key, theme::series(colour), true);
    plot.seriesIndex[key] = index;
    if (size_t(index) >= plot.points.size()) plot.points.resize(size_t(index) + 1);
    return index;
}

void BenchmarkCharts::setMachine(const bench::MachineFacts& machine)
{
    m_machine = machine;
    for (auto& p : m_charts) updateLimit(*p);
}

void BenchmarkCharts::updateLimit(Plot& plot)
{
    double limit = 0.0;
    if (plot.limit == bench::LimitKind::compute_tflops) limit = m_machine.peak_tflops;
    if (plot.limit == bench::LimitKind::memory_bandwidth_gbs) limit = m_machine.bandwidth_gbs;
    if (!(limit > 0.0)) return;
    if (plot.limitSeries < 0) {
        plot.limitSeries = plot.chart->addSeries(tr("hardware limit"), theme::mutedText());
        plot.chart->setSeriesDashed(plot.limitSeries, true);
        plot.points.resize(size_t(plot.limitSeries) + 1);
    }
    // A flat line across every size measured so far.
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < plot.points.size(); ++i) {
        if (int(i) == plot.limitSeries || plot.points[i].empty()) continue;
        lo = std::min(lo, plot.points[i].begin()->first);
        hi = std::max(hi, plot.points[i].rbegin()->first);
    }
    if (!std::isfinite(lo)) return;
    std::vector<ChartSample> line{{lo, 0.0, limit}};
    if (hi > lo) line.push_back({hi, 0.0, limit});
    plot.chart->setSeriesData(plot.limitSeries, line);
}

void BenchmarkCharts::addRows(const std::vector<bench::Row>& rows, const QString& suffix)
{
    std::vector<Plot*> touched;
    for (const bench::Row& row : rows) {
        const bench::SuiteInfo* suite = bench::find_suite(row.suite);
        if (!suite) continue;   // a suite this build does not know (a newer file): its rows are still in the table
        for (const bench::ChartInfo& info : suite->charts) {
            const std::optional<double> value = row.get(info.metric);
            if (!value || !std::isfinite(*value)) continue;
            Plot& plot = plotFor(*suite, info, row);
            const int series = seriesFor(plot, *suite, qs(row.series), suffix);
            plot.points[size_t(series)][row.x] = *value;
            if (std::find(touched.begin(), touched.end(), &plot) == touched.end()) touched.push_back(&plot);
        }
    }
    for (Plot* plot : touched) {
        for (const auto& [name, index] : plot->seriesIndex) {
            std::vector<ChartSample> samples;
            for (const auto& [x, y] : plot->points[size_t(index)]) samples.push_back({x, 0.0, y});
            plot->chart->setSeriesData(index, samples);
        }
        updateLimit(*plot);
    }
}

} // namespace crucible::ui
