#include "ui/pages/benchmark_charts.h"

#include "ui/charts/chart_view.h"
#include "ui/charts/live_chart.h"
#include "ui/format.h"
#include "ui/theme.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QStackedWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace crucible::ui {

namespace {

// "D=64 · pass=fwd": the tags that set a chart apart, as its title shows them.
QString tagText(const std::map<std::string, std::string>& tags)
{
    QStringList parts;
    for (const auto& [k, v] : tags) parts << QStringLiteral("%1=%2").arg(qs(k), qs(v));
    return parts.join(QStringLiteral(" · "));
}

std::vector<ChartSample> samplesOf(const std::map<double, double>& points)
{
    std::vector<ChartSample> out;
    out.reserve(points.size());
    for (const auto& [x, y] : points) out.push_back({x, 0.0, y});
    return out;
}

} // namespace

struct BenchmarkCharts::Plot {
    std::string suite, metric, xName;
    std::map<std::string, std::string> tags;
    bench::ChartInfo info;
    QString title, xLabel;
    std::vector<Line> lines;                 // in the order they first appeared
    std::map<QString, int> lineIndex;        // name → index in lines
    int limitLine = -1;
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
    m_chart = new LiveChart(QString(), m_stack);
    m_chart->setObjectName(QStringLiteral("benchChart"));
    m_chart->setSmoothingControlVisible(false);
    // Point markers reach past the bounding box Qt Charts repaints when a
    // line's points move (a new size rescales the axes): with partial updates
    // a half circle of the old position stays behind. The chart repaints
    // whole, which with a dozen points costs nothing.
    m_chart->view()->setViewportUpdateMode(QGraphicsView::FullViewportUpdate);
    m_stack->addWidget(m_chart);
    layout->addWidget(m_stack, 1);
    connect(m_picker, &QComboBox::currentIndexChanged, this, [this](int i) {
        show(i);
        emit currentChartChanged(i);
    });
}

BenchmarkCharts::~BenchmarkCharts() = default;

void BenchmarkCharts::clear()
{
    m_plots.clear();
    m_picker->clear();   // shows nothing (index -1)
}

int BenchmarkCharts::currentIndex() const { return m_picker->currentIndex(); }
LiveChart* BenchmarkCharts::currentChart() const { return m_shown >= 0 ? m_chart : nullptr; }
void BenchmarkCharts::selectChart(int index) { m_picker->setCurrentIndex(index); }

int BenchmarkCharts::limitSeries() const
{
    if (m_shown < 0) return -1;
    const int line = m_plots[size_t(m_shown)]->limitLine;
    const auto at = std::find(m_shownLines.begin(), m_shownLines.end(), line);
    return line >= 0 && at != m_shownLines.end() ? int(at - m_shownLines.begin()) : -1;
}

bool BenchmarkCharts::selectChart(const std::string& suite, const std::string& metric,
                                  const std::map<std::string, std::string>& tags)
{
    int exact = -1, sameMetric = -1, sameSuite = -1;
    for (int i = 0; i < chartCount(); ++i) {
        const Plot& p = *m_plots[size_t(i)];
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
    for (auto& p : m_plots)
        if (p->suite == suite.id && p->metric == info.metric && p->tags == row.tags && p->xName == row.x_name)
            return *p;

    auto p = std::make_unique<Plot>();
    p->suite = suite.id;
    p->metric = info.metric;
    p->xName = row.x_name;
    p->tags = row.tags;
    p->info = info;
    QString tags = tagText(row.tags);
    // One metric over two axes (bits/byte over steps and over seconds): two charts, named by their axis.
    if (!row.x_name.empty() && row.x_name != suite.x_name)
        tags = tags.isEmpty() ? tr("over %1").arg(qs(row.x_name)) : tr("%1 · over %2").arg(tags, qs(row.x_name));
    const QString title = tags.isEmpty() ? qs(info.title) : QStringLiteral("%1 · %2").arg(qs(info.title), tags);
    p->title = info.y_unit.empty() ? title : QStringLiteral("%1 (%2)").arg(title, qs(info.y_unit));
    const std::string xName = row.x_name.empty() ? suite.x_name : row.x_name;
    p->xLabel = row.x_unit.empty() ? qs(xName) : QStringLiteral("%1 (%2)").arg(qs(xName), qs(row.x_unit));
    m_plots.push_back(std::move(p));
    m_picker->addItem(QStringLiteral("%1 — %2").arg(qs(suite.title), title));   // the first one is shown at once
    return *m_plots.back();
}

int BenchmarkCharts::lineFor(Plot& plot, const bench::SuiteInfo& suite, const QString& name, const QString& suffix)
{
    const QString key = name + suffix;
    if (const auto it = plot.lineIndex.find(key); it != plot.lineIndex.end()) return it->second;
    // Colours follow the suite's legend order, so a series keeps its colour
    // on every chart; a compared file's lines take the palette's far end.
    const auto known = std::find(suite.series.begin(), suite.series.end(), name.toStdString());
    int colour = known != suite.series.end() ? int(known - suite.series.begin()) : int(plot.lineIndex.size());
    if (!suffix.isEmpty()) colour += 4;
    plot.lines.push_back(Line{key, theme::series(colour), false, {}});
    const int index = int(plot.lines.size()) - 1;
    plot.lineIndex[key] = index;
    return index;
}

void BenchmarkCharts::setMachine(const bench::MachineFacts& machine)
{
    m_machine = machine;
    for (auto& p : m_plots) updateLimit(*p);
    refreshShown();
}

void BenchmarkCharts::updateLimit(Plot& plot)
{
    double limit = 0.0;
    if (plot.info.limit == bench::LimitKind::compute_tflops) limit = m_machine.peak_tflops;
    if (plot.info.limit == bench::LimitKind::memory_bandwidth_gbs) limit = m_machine.bandwidth_gbs;
    if (!(limit > 0.0)) return;
    // A flat line across every size measured so far.
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < int(plot.lines.size()); ++i) {
        if (i == plot.limitLine || plot.lines[size_t(i)].points.empty()) continue;
        lo = std::min(lo, plot.lines[size_t(i)].points.begin()->first);
        hi = std::max(hi, plot.lines[size_t(i)].points.rbegin()->first);
    }
    if (!std::isfinite(lo)) return;
    if (plot.limitLine < 0) {
        plot.lines.push_back(Line{tr("hardware limit"), theme::mutedText(), true, {}});
        plot.limitLine = int(plot.lines.size()) - 1;
    }
    plot.lines[size_t(plot.limitLine)].points = {{lo, limit}, {hi, limit}};
}

void BenchmarkCharts::show(int index)
{
    m_chart->removeAllSeries();
    m_shownLines.clear();
    m_shown = index >= 0 && index < chartCount() ? index : -1;
    m_stack->setCurrentWidget(m_shown >= 0 ? static_cast<QWidget*>(m_chart) : m_empty);
    if (m_shown < 0) return;
    const Plot& p = *m_plots[size_t(m_shown)];
    m_chart->setTitle(p.title);
    m_chart->setXLabel(p.xLabel);
    m_chart->setLogX(p.info.log_x);
    m_chart->setLogY(p.info.log_y);
    const QString unit = qs(p.info.y_unit);
    m_chart->setValueFormatter([unit](double v) {
        if (unit == QLatin1String("bytes")) return formatBytes(v);
        return unit.isEmpty() ? formatNumber(v) : QStringLiteral("%1 %2").arg(formatNumber(v), unit);
    });
    refreshShown();
}

void BenchmarkCharts::refreshShown()
{
    if (m_shown < 0) return;
    const Plot& p = *m_plots[size_t(m_shown)];
    // A measured line new since the limit was drawn: redraw the series in order.
    const bool limitShown = !m_shownLines.empty() && m_shownLines.back() == p.limitLine;
    if (limitShown && m_shownLines.size() < p.lines.size()) {
        show(m_shown);
        return;
    }
    std::vector<int> order;
    for (int i = 0; i < int(p.lines.size()); ++i)
        if (i != p.limitLine) order.push_back(i);
    if (p.limitLine >= 0) order.push_back(p.limitLine);
    for (size_t k = m_shownLines.size(); k < order.size(); ++k) {
        const Line& line = p.lines[size_t(order[k])];
        const int series = m_chart->addSeries(line.name, line.color, !line.dashed);
        m_chart->setSeriesDashed(series, line.dashed);
        m_shownLines.push_back(order[k]);
    }
    for (size_t k = 0; k < m_shownLines.size(); ++k)
        m_chart->setSeriesData(int(k), samplesOf(p.lines[size_t(m_shownLines[k])].points));
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
            if (info.log_x && !(row.x > 0.0)) continue;
            Plot& plot = plotFor(*suite, info, row);
            plot.lines[size_t(lineFor(plot, *suite, qs(row.series), suffix))].points[row.x] = *value;
            if (std::find(touched.begin(), touched.end(), &plot) == touched.end()) touched.push_back(&plot);
        }
    }
    for (Plot* plot : touched) updateLimit(*plot);
    refreshShown();
}

} // namespace crucible::ui
