#include "ui/charts/chart_view.h"

#include <QElapsedTimer>
#include <QMouseEvent>
#include <QRubberBand>

namespace crucible::ui {

ChartView::ChartView(QChart* chart, QWidget* parent) : QChartView(chart, parent)
{
    setMouseTracking(true);
    setRubberBand(QChartView::NoRubberBand);   // zoom is ours: it re-decimates the data
    setRenderHint(QPainter::Antialiasing);
    setFrameShape(QFrame::NoFrame);
}

void ChartView::mouseMoveEvent(QMouseEvent* event)
{
    const QPoint p = event->position().toPoint();
    if (m_dragging && m_band) {
        const QRectF plot = chart()->plotArea();
        const int left = std::min(p.x(), m_pressAt.x()), right = std::max(p.x(), m_pressAt.x());
        m_band->setGeometry(QRect(QPoint(left, int(plot.top())), QPoint(right, int(plot.bottom()))));
    }
    emit hovered(event->position());
    QChartView::mouseMoveEvent(event);
}

void ChartView::mousePressEvent(QMouseEvent* event)
{
    if (event->button() == Qt::LeftButton && chart()->plotArea().contains(event->position())) {
        m_pressAt = event->position().toPoint();
        m_dragging = true;
        if (!m_band) m_band = new QRubberBand(QRubberBand::Rectangle, this);
        m_band->setGeometry(QRect(m_pressAt, QSize(1, 1)));
        m_band->show();
        event->accept();
        return;
    }
    QChartView::mousePressEvent(event);
}

void ChartView::mouseReleaseEvent(QMouseEvent* event)
{
    if (m_dragging && event->button() == Qt::LeftButton) {
        m_dragging = false;
        if (m_band) m_band->hide();
        const QPoint p = event->position().toPoint();
        if (std::abs(p.x() - m_pressAt.x()) >= 6) emit rangeSelected(m_pressAt, p);
        event->accept();
        return;
    }
    QChartView::mouseReleaseEvent(event);
}

void ChartView::mouseDoubleClickEvent(QMouseEvent* event)
{
    emit zoomResetRequested();
    event->accept();
}

void ChartView::paintEvent(QPaintEvent* event)
{
    QElapsedTimer clock;
    clock.start();
    QChartView::paintEvent(event);
    m_lastPaintMs = double(clock.nsecsElapsed()) / 1e6;
}

void ChartView::leaveEvent(QEvent* event)
{
    emit hoverLeft();
    QChartView::leaveEvent(event);
}

} // namespace crucible::ui
