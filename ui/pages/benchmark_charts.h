// BenchmarkCharts: the Benchmarks page's charts, one per (suite, metric,
// tags) as SuiteInfo::charts describes them, picked from a list above one
// large LiveChart. Rows go in as they arrive (a live run, a results file, a
// second file to compare), each into every chart whose metric it has, one
// line per series; points are kept sorted by size, so rows may come in any
// order. Where a chart's metric is bounded by the hardware (peak TFLOP/s,
// memory bandwidth) and the machine's limit is known, a dashed line shows it.
#pragma once

#include "core/bench/results_file.h"
#include "core/bench/suite.h"

#include <QWidget>

#include <map>
#include <memory>
#include <vector>

class QComboBox;
class QLabel;
class QStackedWidget;

namespace crucible::ui {

class LiveChart;

class BenchmarkCharts : public QWidget {
    Q_OBJECT
public:
    explicit BenchmarkCharts(QWidget* parent = nullptr);
    ~BenchmarkCharts() override;

    // `suffix` tells a compared file's lines apart (" (B)"); empty for the run.
    void addRows(const std::vector<bench::Row>& rows, const QString& suffix = QString());
    void setMachine(const bench::MachineFacts& machine);
    void clear();

    int chartCount() const { return int(m_charts.size()); }
    LiveChart* currentChart() const;
    LiveChart* chartAt(int index) const;
    // The chart of a suite's metric and tags; without an exact match, the
    // suite's first chart of that metric, else its first chart. False if the
    // suite has none.
    bool selectChart(const std::string& suite, const std::string& metric,
                     const std::map<std::string, std::string>& tags);
    void selectChart(int index);
    int currentIndex() const;
    // The index of the hardware-limit line in a chart, -1 when it has none.
    int limitSeries(int chart) const;

signals:
    void currentChartChanged(int index);

private:
    struct Plot;
    Plot& plotFor(const bench::SuiteInfo& suite, const bench::ChartInfo& info, const bench::Row& row);
    int seriesFor(Plot& plot, const bench::SuiteInfo& suite, const QString& name, const QString& suffix);
    void updateLimit(Plot& plot);

    QComboBox* m_picker;
    QStackedWidget* m_stack;
    QLabel* m_empty;
    std::vector<std::unique_ptr<Plot>> m_charts;
    bench::MachineFacts m_machine;
};

} // namespace crucible::ui
