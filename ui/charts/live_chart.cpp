#include "ui/charts/live_chart.h"

#include "ui/charts/chart_view.h"
#include "ui/format.h"
#include "ui/icons.h"
#include "ui/theme.h"

#include <QActionGroup>
#include <QChart>
#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QGraphicsEllipseItem>
#include <QGraphicsLineItem>
#include <QHBoxLayout>
#include <QLabel>
#include <QLegendMarker>
#include <QLineSeries>
#include <QLogValueAxis>
#include <QMenu>
#include <QMessageBox>
#include <QRegularExpression>
#include <QSettings>
#include <QSlider>
#include <QTextStream>
#include <QToolButton>
#include <QVBoxLayout>
#include <QValueAxis>

#include <algorithm>
#include <cmath>

namespace crucible::ui {

struct LiveChart::Series {
    QString name;
    QColor color;
    Qt::PenStyle style = Qt::SolidLine;
    SampleRing data;
    QLineSeries* raw = nullptr;
    QLineSeries* smooth = nullptr;
    QGraphicsEllipseItem* marker = nullptr;
    std::vector<double> smoothed;   // EMA of data as of the last redraw
    QList<QPointF> drawnRaw, drawnSmooth;

    explicit Series(size_t capacity) : data(capacity) {}
};

namespace {

bool plottable(double v, bool log) { return std::isfinite(v) && (!log || v > 0.0); }

// TensorBoard's smoothing: an EMA debiased for its zero start, so the first
// points are not dragged towards zero.
void smooth(const SampleRing& data, double weight, std::vector<double>& out)
{
    out.resize(data.size());
    double last = 0.0;
    int64_t n = 0;
    for (size_t i = 0; i < data.size(); ++i) {
        const double v = data[i].value;
        if (!std::isfinite(v)) {
            out[i] = v;
            continue;
        }
        last = last * weight + (1.0 - weight) * v;
        ++n;
        out[i] = last / (1.0 - std::pow(weight, double(n)));
    }
}

// Min/max decimation: per pixel column the lowest and the highest sample, in
// the order they occurred. Every spike and dip survives, and the line costs
// two points per pixel however many samples lie under it.
template <class X, class V>
QList<QPointF> decimate(size_t begin, size_t end, X&& xAt, V&& valueAt, double x0, double x1, int columns, bool log,
                        double& yMin, double& yMax)
{
    QList<QPointF> out;
    auto note = [&](const QPointF& p) {
        yMin = std::min(yMin, p.y());
        yMax = std::max(yMax, p.y());
    };
    if (end - begin <= size_t(2 * columns)) {
        out.reserve(qsizetype(end - begin));
        for (size_t i = begin; i < end; ++i) {
            const double v = valueAt(i);
            if (!plottable(v, log)) continue;
            out.append(QPointF(xAt(i), v));
            note(out.back());
        }
        return out;
    }
    out.reserve(2 * columns + 2);
    const double scale = x1 > x0 ? columns / (x1 - x0) : 0.0;
    int column = -1;
    QPointF low, high;
    auto flush = [&] {
        if (column < 0) return;
        const bool lowFirst = low.x() <= high.x();
        out.append(lowFirst ? low : high);
        if (high != low) out.append(lowFirst ? high : low);
        note(low);
        note(high);
    };
    for (size_t i = begin; i < end; ++i) {
        const double v = valueAt(i);
        if (!plottable(v, log)) continue;
        const QPointF p(xAt(i), v);
        const int c = std::clamp(int((p.x() - x0) * scale), 0, columns - 1);
        if (c != column) {
            flush();
            column = c;
            low = high = p;
        } else {
            if (v < low.y()) low = p;
            if (v > high.y()) high = p;
        }
    }
    flush();
    return out;
}

// The narrowest range an axis shows around values of this size, as a
// fraction of them: doubles hold ~16 digits, and Qt Charts labels dynamic
// ticks by adding the spacing to a value until it passes the maximum, which
// never happens once the spacing is below the value's resolution (the GUI
// thread then loops, allocating labels, for ever). Values that agree to nine
// digits are one value to a chart anyway.
constexpr double kNarrowestRelativeSpan = 1e-9;

bool tooNarrow(double lo, double hi)
{
    return hi - lo <= kNarrowestRelativeSpan * std::max(std::fabs(lo), std::fabs(hi));
}

// Sets the range with ticks at round numbers (1, 2 or 5 × 10^k) anchored at
// zero, about five per axis, labelled with as many decimals as the spacing
// needs. The axis holds fixed ticks while range and spacing change together:
// dynamic ticks laid out with a new range but the old spacing (a chart going
// from tokens/s to learning rates) would ask Qt for millions of tick items.
void setRangeWithTicks(QValueAxis* axis, double lo, double hi, bool integers, const QString& format)
{
    if (tooNarrow(lo, hi)) {
        const double mid = lo / 2 + hi / 2;
        const double half = std::max(std::fabs(mid) * kNarrowestRelativeSpan, 1e-12);
        lo = mid - half;
        hi = mid + half;
    }
    const double span = hi - lo;
    axis->setTickType(QValueAxis::TicksFixed);
    axis->setRange(lo, hi);
    if (!(span > 0) || !std::isfinite(span)) return;
    const double raw = span / 5.0;
    const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
    const double fraction = raw / magnitude;
    double step = (fraction < 1.5 ? 1.0 : fraction < 3.5 ? 2.0 : fraction < 7.5 ? 5.0 : 10.0) * magnitude;
    if (integers) step = std::max(1.0, std::round(step));
    // However the numbers came out, never ask for ticks a double cannot step
    // through, nor for more than a few dozen of them: fixed ticks then.
    const double largest = std::max(std::fabs(lo), std::fabs(hi));
    if (!(step > largest * 1e-12) || span / step > 50) return;
    if (!format.isEmpty()) {
        axis->setLabelFormat(format);
    } else {
        const int decimals = std::max(0, int(-std::floor(std::log10(step) + 1e-9)));
        if (largest >= 1e7 || (step < 1e-4 && largest > 0))
            axis->setLabelFormat(QStringLiteral("%.1e"));
        else
            axis->setLabelFormat(QStringLiteral("%.") + QString::number(decimals) + QStringLiteral("f"));
    }
    axis->setTickAnchor(0.0);
    axis->setTickInterval(step);
    axis->setTickType(QValueAxis::TicksDynamic);
}

QToolButton* smallToolButton(QWidget* parent)
{
    auto* b = new QToolButton(parent);
    b->setAutoRaise(true);
    b->setFocusPolicy(Qt::NoFocus);
    return b;
}

} // namespace

LiveChart::LiveChart(const QString& title, QWidget* parent) : QWidget(parent)
{
    m_format = [](double v) { return formatNumber(v, 4); };

    m_chart = new QChart;
    m_chart->setBackgroundRoundness(0);
    m_chart->setMargins(QMargins(2, 2, 6, 2));
    m_chart->setBackgroundBrush(Qt::white);
    m_chart->setPlotAreaBackgroundVisible(false);
    m_chart->setAnimationOptions(QChart::NoAnimation);
    m_chart->legend()->setAlignment(Qt::AlignTop);
    m_chart->legend()->setVisible(false);
    QFont small = font();
    small.setPointSizeF(std::max(7.0, small.pointSizeF() - 1.5));
    m_chart->legend()->setFont(small);
    m_chart->legend()->setLabelColor(theme::mutedText());

    auto styleAxis = [&](auto* axis) {
        axis->setLabelsFont(small);
        axis->setLabelsColor(theme::mutedText());
        axis->setGridLineColor(QColor(0xee, 0xf0, 0xf3));
        axis->setLinePenColor(theme::border());
        axis->setMinorGridLineVisible(false);
        // Qt Charts sizes the label column when the axis is laid out, not
        // when a growing range widens the labels ("8000" → "20000"); shown
        // in full, they stay readable.
        axis->setTruncateLabels(false);
    };
    m_axisX = new QValueAxis;
    m_axisX->setLabelFormat(QStringLiteral("%.0f"));
    m_axisX->setTickCount(6);
    styleAxis(m_axisX);
    m_axisY = new QValueAxis;
    m_axisY->setLabelFormat(QStringLiteral("%.3g"));
    m_axisY->setTickCount(5);
    styleAxis(m_axisY);
    m_axisLogY = new QLogValueAxis;
    m_axisLogY->setBase(10.0);
    m_axisLogY->setLabelFormat(QStringLiteral("%.3g"));
    m_axisLogY->setMinorTickCount(-1);
    styleAxis(m_axisLogY);
    m_axisLogX = new QLogValueAxis;
    m_axisLogX->setBase(2.0);
    m_axisLogX->setLabelFormat(QStringLiteral("%.0f"));
    m_axisLogX->setMinorTickCount(0);
    styleAxis(m_axisLogX);
    m_chart->addAxis(m_axisX, Qt::AlignBottom);
    m_chart->addAxis(m_axisY, Qt::AlignLeft);
    m_axisX->setRange(0, 1);
    m_axisY->setRange(0, 1);
    m_axisLogY->setRange(0.1, 1);
    m_axisLogX->setRange(1, 2);
    for (QAbstractAxis* axis : {static_cast<QAbstractAxis*>(m_axisX), static_cast<QAbstractAxis*>(m_axisY),
                                static_cast<QAbstractAxis*>(m_axisLogY), static_cast<QAbstractAxis*>(m_axisLogX)})
        axis->setLabelsVisible(false);   // until there is data (redraw)

    m_view = new ChartView(m_chart, this);
    m_view->setMinimumHeight(150);

    m_crosshair = new QGraphicsLineItem(m_chart);
    m_crosshair->setPen(QPen(QColor(0x9c, 0xa3, 0xaf), 1, Qt::DashLine));
    m_crosshair->setZValue(20);
    m_crosshair->hide();

    m_readout = new QLabel(m_view);
    m_readout->setStyleSheet(QStringLiteral(
        "QLabel { background: rgba(255,255,255,235); border: 1px solid #d1d5db; border-radius: 6px; padding: 5px 7px;"
        " color: #1f2937; }"));
    m_readout->setAttribute(Qt::WA_TransparentForMouseEvents);
    m_readout->hide();

    m_placeholder = new QLabel(tr("No data yet"), m_view);
    m_placeholder->setAlignment(Qt::AlignCenter);
    m_placeholder->setStyleSheet(QStringLiteral("color: #9ca3af; background: transparent;"));
    m_placeholder->setAttribute(Qt::WA_TransparentForMouseEvents);

    // Header: title, optional smoothing slider, log toggle, menu.
    m_titleLabel = new QLabel(title, this);
    QFont bold = m_titleLabel->font();
    bold.setBold(true);
    m_titleLabel->setFont(bold);

    m_smoothingBox = new QWidget(this);
    auto* smoothRow = new QHBoxLayout(m_smoothingBox);
    smoothRow->setContentsMargins(0, 0, 0, 0);
    smoothRow->setSpacing(4);
    auto* smoothLabel = new QLabel(tr("Smoothing"), m_smoothingBox);
    smoothLabel->setProperty("role", "caption");
    m_smoothingSlider = new QSlider(Qt::Horizontal, m_smoothingBox);
    m_smoothingSlider->setObjectName(QStringLiteral("smoothingSlider"));
    m_smoothingSlider->setRange(0, 99);
    m_smoothingSlider->setFixedWidth(90);
    m_smoothingSlider->setToolTip(tr("Exponential moving average of the values (0 = raw)"));
    m_smoothingValue = new QLabel(QStringLiteral("0.00"), m_smoothingBox);
    m_smoothingValue->setProperty("role", "caption");
    smoothRow->addWidget(smoothLabel);
    smoothRow->addWidget(m_smoothingSlider);
    smoothRow->addWidget(m_smoothingValue);
    m_smoothingBox->hide();
    connect(m_smoothingSlider, &QSlider::valueChanged, this, [this](int v) { setSmoothing(v / 100.0); });

    m_logButton = smallToolButton(this);
    m_logButton->setObjectName(QStringLiteral("logButton"));
    m_logButton->setText(QStringLiteral("log"));
    m_logButton->setCheckable(true);
    m_logButton->setToolTip(tr("Logarithmic Y axis"));
    connect(m_logButton, &QToolButton::toggled, this, &LiveChart::setLogY);

    m_menuButton = smallToolButton(this);
    m_menuButton->setIcon(icons::glyph(QStringLiteral("menu"), theme::mutedText()));
    m_menuButton->setToolTip(tr("Chart options and export"));
    m_menuButton->setPopupMode(QToolButton::InstantPopup);
    auto* menu = new QMenu(m_menuButton);
    auto* logAction = menu->addAction(tr("Logarithmic Y axis"));
    logAction->setCheckable(true);
    connect(logAction, &QAction::toggled, this, &LiveChart::setLogY);
    connect(this, &LiveChart::logYChanged, logAction, &QAction::setChecked);
    auto* xGroup = new QActionGroup(menu);
    auto* byStep = menu->addAction(tr("X axis: step"));
    auto* byTime = menu->addAction(tr("X axis: training time"));
    for (QAction* a : {byStep, byTime}) {
        a->setCheckable(true);
        xGroup->addAction(a);
    }
    byStep->setChecked(true);
    connect(byStep, &QAction::triggered, this, [this] { setXAxis(XAxis::Step); });
    connect(byTime, &QAction::triggered, this, [this] { setXAxis(XAxis::Time); });
    connect(this, &LiveChart::xAxisChanged, menu, [byStep, byTime](XAxis a) {
        (a == XAxis::Step ? byStep : byTime)->setChecked(true);
    });
    menu->addAction(tr("Reset zoom"), this, &LiveChart::resetZoom);
    menu->addSeparator();
    menu->addAction(tr("Save chart as PNG…"), this, &LiveChart::saveAsPng);
    menu->addAction(tr("Save data as CSV…"), this, &LiveChart::saveAsCsv);
    m_menuButton->setMenu(menu);

    auto* header = new QHBoxLayout;
    header->setContentsMargins(8, 4, 2, 0);
    header->setSpacing(4);
    header->addWidget(m_titleLabel);
    header->addStretch(1);
    header->addWidget(m_smoothingBox);
    header->addWidget(m_logButton);
    header->addWidget(m_menuButton);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);
    layout->addLayout(header);
    layout->addWidget(m_view, 1);
    setAutoFillBackground(true);
    QPalette pal = palette();
    pal.setColor(QPalette::Window, Qt::white);
    setPalette(pal);

    m_redrawTimer.setSingleShot(true);
    connect(&m_redrawTimer, &QTimer::timeout, this, &LiveChart::redraw);
    connect(m_view, &ChartView::hovered, this, &LiveChart::updateHover);
    connect(m_view, &ChartView::hoverLeft, this, &LiveChart::hideHover);
    connect(m_view, &ChartView::zoomResetRequested, this, &LiveChart::resetZoom);
    connect(m_view, &ChartView::rangeSelected, this, [this](const QPointF& a, const QPointF& b) {
        if (m_series.empty()) return;
        const double x0 = m_chart->mapToValue(a, m_series.front()->raw).x();
        const double x1 = m_chart->mapToValue(b, m_series.front()->raw).x();
        setZoomRange(std::min(x0, x1), std::max(x0, x1));
    });
}

LiveChart::~LiveChart() = default;

QString LiveChart::title() const { return m_titleLabel->text(); }
void LiveChart::setTitle(const QString& title) { m_titleLabel->setText(title); }

int LiveChart::addSeries(const QString& name, const QColor& color, bool showPoints, size_t capacity)
{
    auto s = std::make_unique<Series>(capacity);
    s->name = name;
    s->color = color.isValid() ? color : theme::series(int(m_series.size()));
    s->raw = new QLineSeries;
    s->raw->setName(name);
    s->smooth = new QLineSeries;
    s->smooth->setName(name);
    QPen pen(s->color, 2.0);
    s->raw->setPen(pen);
    s->smooth->setPen(pen);
    if (showPoints) {
        s->raw->setPointsVisible(true);
        s->raw->setMarkerSize(6);
    }
    m_chart->addSeries(s->raw);
    m_chart->addSeries(s->smooth);
    for (QLineSeries* ls : {s->raw, s->smooth}) {
        ls->attachAxis(m_logX ? static_cast<QAbstractAxis*>(m_axisLogX) : m_axisX);
        ls->attachAxis(m_logY ? static_cast<QAbstractAxis*>(m_axisLogY) : m_axisY);
    }
    s->marker = new QGraphicsEllipseItem(-4, -4, 8, 8, m_chart);
    s->marker->setBrush(s->color);
    s->marker->setPen(QPen(Qt::white, 1.5));
    s->marker->setZValue(21);
    s->marker->hide();
    // One legend entry per series from the start (the raw line's; redraw()
    // swaps to the smoothed one's while smoothing), not one per line.
    for (QLegendMarker* m : m_chart->legend()->markers(m_smoothing > 0.0 ? s->raw : s->smooth)) m->setVisible(false);
    m_series.push_back(std::move(s));
    m_chart->legend()->setVisible(m_series.size() > 1);
    scheduleRedraw();
    return int(m_series.size()) - 1;
}

void LiveChart::removeAllSeries()
{
    hideHover();
    for (auto& s : m_series) {
        m_chart->removeSeries(s->raw);
        m_chart->removeSeries(s->smooth);
        delete s->raw;
        delete s->smooth;
        delete s->marker;
    }
    m_series.clear();
    m_zoom.reset();
    m_chart->legend()->setVisible(false);
    scheduleRedraw();
}

QString LiveChart::seriesName(int series) const { return m_series.at(size_t(series))->name; }

void LiveChart::setSeriesDashed(int series, bool dashed)
{
    m_series.at(size_t(series))->style = dashed ? Qt::DashLine : Qt::SolidLine;
    scheduleRedraw();
}

bool LiveChart::seriesDashed(int series) const { return m_series.at(size_t(series))->style == Qt::DashLine; }

void LiveChart::setXLabel(const QString& name) { m_xLabel = name; }

void LiveChart::append(int series, double step, double time, double value)
{
    m_series.at(size_t(series))->data.push({step, time, value});
    scheduleRedraw();
}

void LiveChart::append(int series, const std::vector<ChartSample>& samples)
{
    SampleRing& ring = m_series.at(size_t(series))->data;
    for (const ChartSample& s : samples) ring.push(s);
    scheduleRedraw();
}

void LiveChart::setSeriesData(int series, const std::vector<ChartSample>& samples)
{
    SampleRing& ring = m_series.at(size_t(series))->data;
    ring.clear();
    for (const ChartSample& s : samples) ring.push(s);
    scheduleRedraw();
}

void LiveChart::clearData()
{
    hideHover();
    for (auto& s : m_series) s->data.clear();
    m_zoom.reset();
    scheduleRedraw();
}

size_t LiveChart::pointCount(int series) const { return m_series.at(size_t(series))->data.size(); }

QList<QPointF> LiveChart::drawnPoints(int series, bool smoothed) const
{
    const Series& s = *m_series.at(size_t(series));
    return smoothed ? s.drawnSmooth : s.drawnRaw;
}

void LiveChart::setValueFormatter(std::function<QString(double)> format) { m_format = std::move(format); }

void LiveChart::setAxisLabelFormat(const QString& printfFormat)
{
    m_yLabelFormat = printfFormat;
    m_axisLogY->setLabelFormat(printfFormat);
}

void LiveChart::setPlaceholderText(const QString& text) { m_placeholder->setText(text); }

void LiveChart::setSmoothingControlVisible(bool visible) { m_smoothingBox->setVisible(visible); }

void LiveChart::setMaxRedrawRate(int perSecond) { m_minIntervalMs = 1000 / std::max(1, perSecond); }

void LiveChart::setRedrawBudget(double coreFraction) { m_budget = std::clamp(coreFraction, 1e-4, 1.0); }

void LiveChart::setSmoothing(double weight)
{
    weight = std::clamp(weight, 0.0, 0.999);
    if (weight == m_smoothing) return;
    m_smoothing = weight;
    {
        const QSignalBlocker block(m_smoothingSlider);
        m_smoothingSlider->setValue(int(std::lround(weight * 100)));
    }
    m_smoothingValue->setText(QString::number(weight, 'f', 2));
    emit smoothingChanged(weight);
    scheduleRedraw();
}

void LiveChart::attachYAxis()
{
    QAbstractAxis* from = m_logY ? static_cast<QAbstractAxis*>(m_axisY) : m_axisLogY;
    QAbstractAxis* to = m_logY ? static_cast<QAbstractAxis*>(m_axisLogY) : m_axisY;
    for (auto& s : m_series) {
        s->raw->detachAxis(from);
        s->smooth->detachAxis(from);
    }
    m_chart->removeAxis(from);   // the chart gives the axis back; we keep both
    m_chart->addAxis(to, Qt::AlignLeft);
    for (auto& s : m_series) {
        s->raw->attachAxis(to);
        s->smooth->attachAxis(to);
    }
}

void LiveChart::attachXAxis()
{
    QAbstractAxis* from = m_logX ? static_cast<QAbstractAxis*>(m_axisX) : m_axisLogX;
    QAbstractAxis* to = m_logX ? static_cast<QAbstractAxis*>(m_axisLogX) : m_axisX;
    for (auto& s : m_series) {
        s->raw->detachAxis(from);
        s->smooth->detachAxis(from);
    }
    m_chart->removeAxis(from);
    m_chart->addAxis(to, Qt::AlignBottom);
    for (auto& s : m_series) {
        s->raw->attachAxis(to);
        s->smooth->attachAxis(to);
    }
}

void LiveChart::setLogX(bool on)
{
    if (on == m_logX) return;
    m_logX = on;
    m_zoom.reset();
    attachXAxis();
    redrawNow();
}

void LiveChart::setLogY(bool on)
{
    if (on == m_logY) return;
    m_logY = on;
    attachYAxis();
    {
        const QSignalBlocker block(m_logButton);
        m_logButton->setChecked(on);
    }
    emit logYChanged(on);
    redrawNow();
}

void LiveChart::setXAxis(XAxis axis)
{
    if (axis == m_xAxis) return;
    m_xAxis = axis;
    m_zoom.reset();
    m_axisX->setLabelFormat(QStringLiteral("%.0f"));
    emit xAxisChanged(axis);
    redrawNow();
}

void LiveChart::setZoomRange(double from, double to)
{
    if (!(to > from)) return;
    m_zoom = std::make_pair(from, to);
    hideHover();
    redrawNow();
}

void LiveChart::resetZoom()
{
    if (!m_zoom) return;
    m_zoom.reset();
    redrawNow();
}

void LiveChart::scheduleRedraw()
{
    m_dirty = true;
    if (m_redrawTimer.isActive()) return;
    // Spend at most the budgeted share of a core on this chart: a frame that
    // took 2 ms at a 0.5% budget waits 400 ms for the next.
    const double costMs = m_lastRedrawMs + m_view->lastPaintMs();
    m_redrawTimer.start(std::clamp(int(costMs / m_budget), m_minIntervalMs, 1000));
}

void LiveChart::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    if (m_dirty) scheduleRedraw();
}

void LiveChart::resizeEvent(QResizeEvent* event)
{
    QWidget::resizeEvent(event);
    m_placeholder->setGeometry(m_view->rect());
    scheduleRedraw();   // the pixel width decides the decimation
}

void LiveChart::redrawNow()
{
    m_redrawTimer.stop();
    m_dirty = true;
    redraw();
}

size_t LiveChart::lowerIndex(const Series& s, double x) const
{
    // Samples arrive in step (and time) order, so x is sorted.
    size_t lo = 0, hi = s.data.size();
    while (lo < hi) {
        const size_t mid = (lo + hi) / 2;
        if (xOf(s.data[mid]) < x) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

void LiveChart::redraw()
{
    // A hidden chart keeps its data and draws when shown: while training, the
    // pages the user is not looking at cost nothing.
    if (!isVisible()) return;
    m_dirty = false;
    QElapsedTimer clock;
    clock.start();

    bool any = false;
    double x0 = INFINITY, x1 = -INFINITY;
    for (const auto& s : m_series) {
        if (s->data.empty()) continue;
        any = true;
        x0 = std::min(x0, xOf(s->data[0]));
        x1 = std::max(x1, xOf(s->data.back()));
    }
    if (m_placeholder->isVisible() == any) m_placeholder->setVisible(!any);
    // An empty chart has no scale to label (its 0..1 placeholder range
    // would read "0 0 0 1 1 1").
    for (QAbstractAxis* axis : {static_cast<QAbstractAxis*>(m_axisX), static_cast<QAbstractAxis*>(m_axisY),
                                static_cast<QAbstractAxis*>(m_axisLogY), static_cast<QAbstractAxis*>(m_axisLogX)})
        if (axis->labelsVisible() != any) axis->setLabelsVisible(any);
    if (m_zoom) {
        x0 = m_zoom->first;
        x1 = m_zoom->second;
    }
    if (!any) {
        for (auto& s : m_series) {
            s->raw->clear();
            s->smooth->clear();
            s->drawnRaw.clear();
            s->drawnSmooth.clear();
        }
        return;
    }
    // All samples at one x (a single evaluation): centre them in a range of
    // two, so a point's marker is not cut in half by the plot's edge.
    if (x1 <= x0) {
        x0 -= 1.0;
        x1 = x0 + 2.0;
    }
    const int columns = std::max(50, int(m_chart->plotArea().width()));
    double yMin = INFINITY, yMax = -INFINITY;
    const bool smoothing = m_smoothing > 0.0;

    for (auto& s : m_series) {
        const SampleRing& d = s->data;
        size_t begin = lowerIndex(*s, x0), end = lowerIndex(*s, std::nextafter(x1, INFINITY));
        // One sample beyond each edge, so lines leave the plot instead of stopping short.
        if (begin > 0) --begin;
        if (end < d.size()) ++end;
        auto xAt = [&](size_t i) { return xOf(d[i]); };
        if (smoothing) smooth(d, m_smoothing, s->smoothed);
        else s->smoothed.clear();

        s->drawnRaw = decimate(begin, end, xAt, [&](size_t i) { return d[i].value; }, x0, x1, columns, m_logY, yMin, yMax);
        if (smoothing)
            s->drawnSmooth = decimate(begin, end, xAt, [&](size_t i) { return s->smoothed[i]; }, x0, x1, columns,
                                      m_logY, yMin, yMax);
        else
            s->drawnSmooth.clear();

        QColor faded = s->color;
        faded.setAlphaF(0.28);
        QPen rawPen(smoothing ? faded : s->color, smoothing ? 1.2 : 2.0, s->style);
        s->raw->setPen(rawPen);
        s->smooth->setPen(QPen(s->color, 2.0, s->style));
        s->raw->replace(s->drawnRaw);
        s->smooth->replace(s->drawnSmooth);
        s->smooth->setVisible(smoothing);
        // One legend entry per series: the line drawn in full colour.
        const auto rawMarkers = m_chart->legend()->markers(s->raw);
        const auto smoothMarkers = m_chart->legend()->markers(s->smooth);
        if (!rawMarkers.isEmpty() && rawMarkers.front()->isVisible() == smoothing) rawMarkers.front()->setVisible(!smoothing);
        if (!smoothMarkers.isEmpty() && smoothMarkers.front()->isVisible() != smoothing)
            smoothMarkers.front()->setVisible(smoothing);
    }

    if (m_logX && x0 > 0.0)
        m_axisLogX->setRange(x0 / 1.15, x1 * 1.15);   // a margin, so end points keep their markers whole
    else
        setRangeWithTicks(m_axisX, x0, x1, m_xAxis == XAxis::Step, QString());
    if (!std::isfinite(yMin)) {
        yMin = m_logY ? 0.1 : 0.0;
        yMax = 1.0;
    }
    if (m_logY) {
        m_axisLogY->setRange(yMin / 1.15, yMax * 1.15);
    } else {
        // A constant series (or one whose values differ only in their last
        // digits) sits in the middle of a band 20% of its value wide.
        double pad = (yMax - yMin) * 0.06;
        if (tooNarrow(yMin, yMax)) {
            yMin = yMax = yMin / 2 + yMax / 2;
            pad = std::max(std::fabs(yMax) * 0.1, 1e-9);
        }
        // Quantities that cannot go negative keep their axis at zero or above.
        const double low = yMin >= 0.0 && yMin - pad < 0.0 ? 0.0 : yMin - pad;
        setRangeWithTicks(m_axisY, low, yMax + pad, false, m_yLabelFormat);
    }
    if (m_hoverPos) updateHover(*m_hoverPos);
    m_lastRedrawMs = double(clock.nsecsElapsed()) / 1e6;
}

void LiveChart::updateHover(const QPointF& viewPos)
{
    if (m_series.empty() || !m_chart->plotArea().contains(viewPos)) {
        hideHover();
        return;
    }
    const double x = m_chart->mapToValue(viewPos, m_series.front()->raw).x();
    placeHover(x, viewPos);
    m_hoverPos = viewPos;
}

void LiveChart::showHoverAt(double x)
{
    if (m_series.empty()) return;
    redrawNow();
    const double anyY = m_logY ? m_axisLogY->min() : m_axisY->min();
    QPointF pos = m_chart->mapToPosition(QPointF(x, anyY), m_series.front()->raw);
    pos.setY(m_chart->plotArea().center().y());
    placeHover(x, pos);
}

void LiveChart::placeHover(double x, const QPointF& viewPos)
{
    // The sample nearest to x in each series.
    struct Hit {
        const Series* s;
        size_t i;
    };
    std::vector<Hit> hits;
    double snapX = x, bestDistance = INFINITY;
    // Nearest as drawn: on a log axis, by ratio.
    auto distance = [&](double at) {
        return m_logX && at > 0.0 && x > 0.0 ? std::fabs(std::log(at / x)) : std::fabs(at - x);
    };
    for (const auto& s : m_series) {
        if (s->data.empty()) continue;
        size_t i = lowerIndex(*s, x);
        if (i >= s->data.size()) i = s->data.size() - 1;
        if (i > 0 && distance(xOf(s->data[i - 1])) <= distance(xOf(s->data[i]))) --i;
        hits.push_back({s.get(), i});
        const double d = distance(xOf(s->data[i]));
        if (d < bestDistance) {
            bestDistance = d;
            snapX = xOf(s->data[i]);
        }
    }
    if (hits.empty()) {
        hideHover();
        return;
    }

    const QRectF plot = m_chart->plotArea();
    QLineSeries* ref = m_series.front()->raw;
    const double px = m_chart->mapToPosition(QPointF(snapX, 1.0), ref).x();
    m_crosshair->setLine(px, plot.top(), px, plot.bottom());
    m_crosshair->show();

    const ChartSample& nearest = hits.front().s->data[hits.front().i];
    const QString xName = m_xLabel.isEmpty() ? QStringLiteral("step") : m_xLabel;
    QString html = m_xAxis == XAxis::Step
                       ? QStringLiteral("<b>%1 %2</b>").arg(xName.toHtmlEscaped()).arg(qint64(std::llround(nearest.step)))
                       : QStringLiteral("<b>%1</b>").arg(formatDuration(nearest.time));
    QString plain = m_xAxis == XAxis::Step ? QStringLiteral("%1 %2").arg(xName).arg(qint64(std::llround(nearest.step)))
                                           : formatDuration(nearest.time);
    if (m_xAxis == XAxis::Step && m_xLabel.isEmpty())
        html += QStringLiteral(" <span style='color:#6b7280'>· %1</span>").arg(formatDuration(nearest.time));
    for (const auto& s : m_series) s->marker->hide();
    for (const Hit& h : hits) {
        const ChartSample& sample = h.s->data[h.i];
        const bool smoothed = m_smoothing > 0.0 && h.i < h.s->smoothed.size();
        const double shown = smoothed ? h.s->smoothed[h.i] : sample.value;
        html += QStringLiteral("<br><span style='color:%1'>●</span> %2 <b>%3</b>")
                    .arg(h.s->color.name(), h.s->name.toHtmlEscaped(), m_format(shown));
        plain += QStringLiteral("\n%1 %2").arg(h.s->name, m_format(shown));
        if (smoothed) {
            html += QStringLiteral(" <span style='color:#6b7280'>(raw %1)</span>").arg(m_format(sample.value));
            plain += QStringLiteral(" (raw %1)").arg(m_format(sample.value));
        }
        if (std::fabs(xOf(sample) - snapX) < 1e-9 && plottable(shown, m_logY)) {
            const QPointF at = m_chart->mapToPosition(QPointF(xOf(sample), shown), h.s->raw);
            if (plot.adjusted(-1, -1, 1, 1).contains(at)) {
                h.s->marker->setPos(at);
                h.s->marker->show();
            }
        }
    }
    m_hoverText = plain;
    m_readout->setText(html);
    m_readout->adjustSize();
    QPoint at = viewPos.toPoint() + QPoint(14, 12);
    if (at.x() + m_readout->width() > m_view->width()) at.setX(int(viewPos.x()) - m_readout->width() - 14);
    if (at.y() + m_readout->height() > m_view->height()) at.setY(m_view->height() - m_readout->height() - 2);
    m_readout->move(std::max(0, at.x()), std::max(0, at.y()));
    m_readout->show();
    m_readout->raise();
}

void LiveChart::hideHover()
{
    m_hoverPos.reset();
    m_hoverText.clear();
    m_readout->hide();
    m_crosshair->hide();
    for (auto& s : m_series) s->marker->hide();
}

QString LiveChart::hoverText() const { return m_hoverText; }

bool LiveChart::exportPng(const QString& path)
{
    hideHover();
    redrawNow();
    return m_view->grab().save(path, "PNG");
}

QString LiveChart::toCsv() const
{
    QString out;
    QTextStream csv(&out);
    QString xName = m_xLabel.isEmpty() ? QStringLiteral("step") : m_xLabel;
    xName.replace(QLatin1Char(','), QLatin1Char(' '));
    csv << "series," << xName << ",time_s,value";
    if (m_smoothing > 0.0) csv << ",smoothed";
    csv << '\n';
    std::vector<double> smoothed;
    for (const auto& s : m_series) {
        if (m_smoothing > 0.0) smooth(s->data, m_smoothing, smoothed);
        QString name = s->name;
        if (name.contains(QLatin1Char(',')) || name.contains(QLatin1Char('"')))
            name = QLatin1Char('"') + name.replace(QLatin1Char('"'), QStringLiteral("\"\"")) + QLatin1Char('"');
        for (size_t i = 0; i < s->data.size(); ++i) {
            const ChartSample& p = s->data[i];
            // Steps are integers; a named X (sizes, seconds) is written as it is.
            const QString x = m_xLabel.isEmpty() ? QString::number(qint64(std::llround(p.step)))
                                                 : QString::number(p.step, 'g', 10);
            csv << name << ',' << x << ',' << QString::number(p.time, 'g', 10) << ','
                << QString::number(p.value, 'g', 10);
            if (m_smoothing > 0.0) csv << ',' << QString::number(smoothed[i], 'g', 10);
            csv << '\n';
        }
    }
    return out;
}

bool LiveChart::exportCsv(const QString& path) const
{
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly | QIODevice::Truncate | QIODevice::Text)) return false;
    const QByteArray bytes = toCsv().toUtf8();
    return file.write(bytes) == bytes.size();
}

namespace {

QString exportPath(QWidget* parent, const QString& title, const QString& suffix, const QString& filter)
{
    QSettings settings;
    const QString dir = settings.value(QStringLiteral("charts/exportDir"), QDir::homePath()).toString();
    QString name = title.toLower();
    name.replace(QRegularExpression(QStringLiteral("[^a-z0-9]+")), QStringLiteral("-"));
    const QString path = QFileDialog::getSaveFileName(parent, QObject::tr("Export %1").arg(title),
                                                      QDir(dir).filePath(name + suffix), filter);
    if (!path.isEmpty()) settings.setValue(QStringLiteral("charts/exportDir"), QFileInfo(path).absolutePath());
    return path;
}

} // namespace

void LiveChart::saveAsPng()
{
    const QString path = exportPath(this, title(), QStringLiteral(".png"), tr("PNG images (*.png)"));
    if (!path.isEmpty() && !exportPng(path))
        QMessageBox::warning(this, tr("Export failed"),
                             tr("Could not write %1. Check that the folder exists and is writable.").arg(path));
}

void LiveChart::saveAsCsv()
{
    const QString path = exportPath(this, title(), QStringLiteral(".csv"), tr("CSV files (*.csv)"));
    if (!path.isEmpty() && !exportCsv(path))
        QMessageBox::warning(this, tr("Export failed"),
                             tr("Could not write %1. Check that the folder exists and is writable.").arg(path));
}

} // namespace crucible::ui
