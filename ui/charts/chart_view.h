// ChartView: a QChartView that reports the mouse to its LiveChart: hover
// positions for the crosshair readout, a horizontal drag to zoom into a
// range of steps, and a double click to zoom back out.
#pragma once

#include <QChartView>

class QRubberBand;

namespace crucible::ui {

class ChartView : public QChartView {
    Q_OBJECT
public:
    explicit ChartView(QChart* chart, QWidget* parent = nullptr);

    // How long the last paint took: the chart's redraw budget counts it.
    double lastPaintMs() const { return m_lastPaintMs; }

signals:
    void hovered(const QPointF& position);   // view coordinates
    void hoverLeft();
    void rangeSelected(const QPointF& from, const QPointF& to);
    void zoomResetRequested();

protected:
    void mouseMoveEvent(QMouseEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void mouseReleaseEvent(QMouseEvent* event) override;
    void mouseDoubleClickEvent(QMouseEvent* event) override;
    void leaveEvent(QEvent* event) override;
    void paintEvent(QPaintEvent* event) override;

private:
    QRubberBand* m_band = nullptr;
    QPoint m_pressAt;
    bool m_dragging = false;
    double m_lastPaintMs = 0.0;
};

} // namespace crucible::ui
