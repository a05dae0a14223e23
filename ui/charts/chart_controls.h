// ChartControls: one smoothing slider and one X-axis choice for a group of
// charts (as TensorBoard's sidebar), so a page of six charts is tuned at once.
#pragma once

#include "ui/charts/live_chart.h"

#include <QWidget>

class QComboBox;
class QLabel;
class QSlider;

namespace crucible::ui {

class ChartControls : public QWidget {
    Q_OBJECT
public:
    explicit ChartControls(QWidget* parent = nullptr);

    // The chart follows these controls from now on (and starts with their values).
    void attach(LiveChart* chart);

    double smoothing() const;
    LiveChart::XAxis xAxis() const;
    void setSmoothing(double weight);
    void setXAxis(LiveChart::XAxis axis);

signals:
    void smoothingChanged(double weight);
    void xAxisChanged(crucible::ui::LiveChart::XAxis axis);

private:
    QSlider* m_slider;
    QLabel* m_value;
    QComboBox* m_axis;
};

} // namespace crucible::ui
