// LiveChart: the chart every page uses, for a run in progress and for runs
// overlaid after the fact.
//
// Samples go into a ring buffer per series (appending is O(1) and never
// touches Qt Charts); a timer redraws at most ~30 times a second, and only
// while the chart is visible. A redraw decimates each series to the plot's
// pixel width (first, min, max and last sample of every pixel column, so no
// spike is lost) and hands the result to QXYSeries::replace in one call, so
// 100K points cost what ~4 points per pixel cost. Smoothing is TensorBoard's
// debiased EMA, drawn over the faded raw line; the Y axis can be logarithmic;
// X is the optimizer step or the training time. Hovering shows a crosshair
// with every series' value at that step; dragging zooms into a range of
// steps, a double click zooms out. Charts and their data export as PNG and CSV.
// A chart of sizes rather than steps (the Benchmarks page) names its X axis
// and may make it logarithmic (base 2: sizes that double sit evenly apart).
#pragma once

#include "ui/charts/sample_ring.h"

#include <QColor>
#include <QList>
#include <QPointF>
#include <QTimer>
#include <QWidget>

#include <functional>
#include <memory>
#include <optional>
#include <vector>

class QChart;
class QGraphicsEllipseItem;
class QGraphicsLineItem;
class QLabel;
class QLineSeries;
class QLogValueAxis;
class QMenu;
class QSlider;
class QToolButton;
class QValueAxis;

namespace crucible::ui {

class ChartView;

class LiveChart : public QWidget {
    Q_OBJECT
public:
    enum class XAxis { Step, Time };
    Q_ENUM(XAxis)

    static constexpr size_t kDefaultCapacity = size_t(1) << 18;

    explicit LiveChart(const QString& title, QWidget* parent = nullptr);
    ~LiveChart() override;

    QString title() const;
    void setTitle(const QString& title);

    // Returns the series index. An invalid colour picks the next palette colour;
    // showPoints suits sparse series (evaluations).
    int addSeries(const QString& name, const QColor& color = QColor(), bool showPoints = false,
                  size_t capacity = kDefaultCapacity);
    void removeAllSeries();
    // A dashed line: a reference (an estimate, a hardware limit) beside measurements.
    void setSeriesDashed(int series, bool dashed);
    bool seriesDashed(int series) const;
    int seriesCount() const { return int(m_series.size()); }
    QString seriesName(int series) const;

    void append(int series, double step, double time, double value);
    void append(int series, const std::vector<ChartSample>& samples);
    // Replaces one series' samples (in x order): for data that does not
    // arrive in order, such as benchmark rows kept sorted by size.
    void setSeriesData(int series, const std::vector<ChartSample>& samples);
    void clearData();   // keeps the series

    size_t pointCount(int series) const;
    // What the last redraw handed to Qt Charts, for tests and the curious.
    QList<QPointF> drawnPoints(int series, bool smoothed = false) const;

    double smoothing() const { return m_smoothing; }
    bool logY() const { return m_logY; }
    bool logX() const { return m_logX; }
    // The X axis's name in the readout and the CSV header instead of "step"
    // ("T", "batch"); the readout then leaves out the training time.
    void setXLabel(const QString& name);
    QString xLabel() const { return m_xLabel; }
    XAxis xAxis() const { return m_xAxis; }
    std::optional<std::pair<double, double>> zoomRange() const { return m_zoom; }

    // Formats values in the hover readout and the Y axis labels ("%.3g" style
    // for the axis, a function for the readout).
    void setValueFormatter(std::function<QString(double)> format);
    void setAxisLabelFormat(const QString& printfFormat);
    void setPlaceholderText(const QString& text);
    void setSmoothingControlVisible(bool visible);   // for a chart standing alone
    void setMaxRedrawRate(int perSecond);   // default 30
    // The share of one CPU core this chart may spend redrawing (default 5%):
    // the slower a frame, the longer until the next. Training on the CPU
    // shares the cores with the GUI, so the Train page sets a small budget.
    void setRedrawBudget(double coreFraction);

    bool exportPng(const QString& path);
    bool exportCsv(const QString& path) const;
    QString toCsv() const;

    // The hover readout as plain text ("" when hidden); showHoverAt places the
    // crosshair at an x value, as the mouse would.
    QString hoverText() const;
    void showHoverAt(double x);
    void hideHover();

    void redrawNow();
    QChart* chart() const { return m_chart; }
    ChartView* view() const { return m_view; }

public slots:
    void setSmoothing(double weight);   // 0 (off) .. 0.999
    void setLogY(bool on);
    void setLogX(bool on);   // base 2; only for positive X values
    void setXAxis(crucible::ui::LiveChart::XAxis axis);
    void setZoomRange(double from, double to);
    void resetZoom();
    // Ask for a file name, then export (what the chart's menu does).
    void saveAsPng();
    void saveAsCsv();

signals:
    void smoothingChanged(double weight);
    void logYChanged(bool on);
    void xAxisChanged(crucible::ui::LiveChart::XAxis axis);

protected:
    void showEvent(QShowEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;

private:
    struct Series;

    void scheduleRedraw();
    void redraw();
    void updateHover(const QPointF& viewPos);
    void placeHover(double x, const QPointF& viewPos);
    void attachYAxis();
    void attachXAxis();
    double xOf(const ChartSample& s) const { return m_xAxis == XAxis::Step ? s.step : s.time; }
    size_t lowerIndex(const Series& s, double x) const;

    QChart* m_chart;
    ChartView* m_view;
    QValueAxis* m_axisX;
    QValueAxis* m_axisY;
    QLogValueAxis* m_axisLogY;
    QLogValueAxis* m_axisLogX;
    QLabel* m_titleLabel;
    QToolButton* m_logButton;
    QToolButton* m_menuButton;
    QSlider* m_smoothingSlider;
    QLabel* m_smoothingValue;
    QWidget* m_smoothingBox;
    QLabel* m_placeholder;
    QLabel* m_readout;
    QGraphicsLineItem* m_crosshair;
    std::vector<std::unique_ptr<Series>> m_series;
    std::function<QString(double)> m_format;
    QString m_yLabelFormat;   // empty: chosen from the tick spacing
    QTimer m_redrawTimer;
    double m_smoothing = 0.0;
    bool m_logY = false;
    bool m_logX = false;
    QString m_xLabel;
    XAxis m_xAxis = XAxis::Step;
    std::optional<std::pair<double, double>> m_zoom;
    bool m_dirty = false;
    int m_minIntervalMs = 33;
    double m_budget = 0.05;
    double m_lastRedrawMs = 0.0;   // data handed to Qt Charts, axes, readout
    std::optional<QPointF> m_hoverPos;
    QString m_hoverText;
};

} // namespace crucible::ui
