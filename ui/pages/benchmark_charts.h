// BenchmarkCharts: the Benchmarks page's charts, one per (suite, metric,
// tags) as SuiteInfo::charts describes them, picked from a list above one
// large LiveChart. Rows go in as they arrive (a live run, a results file, a
// second file to compare), each into every chart whose metric it has, one
// line per series; points are kept sorted by size, so rows may come in any
// order. Where a chart's metric is bounded by the hardware (peak TFLOP/s,
// memory bandwidth) and the machine's limit is known, a dashed line shows it.
//
// The charts' data live here and one LiveChart shows the picked one: a
// suite that opens a dozen charts in one batch of rows costs the GUI thread
// nothing until one is looked at (building a Qt chart takes tens of ms).
#pragma once

#include "core/bench/results_file.h"
#include "core/bench/suite.h"

#include <QColor>
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

    int chartCount() const { return int(m_plots.size()); }
    int currentIndex() const;
    // The chart on screen; nullptr while there is none.
    LiveChart* currentChart() const;
    // The chart of a suite's metric and tags; without an exact match, the
    // suite's first chart of that metric, else its first chart. False if the
    // suite has none.
    bool selectChart(const std::string& suite, const std::string& metric,
                     const std::map<std::string, std::string>& tags);
    void selectChart(int index);
    // The hardware-limit line's series in the chart on screen, -1 when none.
    int limitSeries() const;

signals:
    void currentChartChanged(int index);

private:
    struct Line {
        QString name;
        QColor color;
        bool dashed = false;
        std::map<double, double> points;   // x → y
    };
    struct Plot;
    Plot& plotFor(const bench::SuiteInfo& suite, const bench::ChartInfo& info, const bench::Row& row);
    int lineFor(Plot& plot, const bench::SuiteInfo& suite, const QString& name, const QString& suffix);
    void updateLimit(Plot& plot);
    void show(int index);   // builds the LiveChart's series from the plot's lines
    void refreshShown();    // new points (and lines) of the plot on screen

    QComboBox* m_picker;
    QStackedWidget* m_stack;
    QLabel* m_empty;
    LiveChart* m_chart;
    std::vector<std::unique_ptr<Plot>> m_plots;
    int m_shown = -1;
    // The shown plot's lines in m_chart's series order: measured lines as
    // they appeared, the hardware limit last (so the legend reads that way).
    std::vector<int> m_shownLines;
    bench::MachineFacts m_machine;
};

} // namespace crucible::ui
