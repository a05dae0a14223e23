#include "ui/charts/chart_controls.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSlider>

namespace crucible::ui {

ChartControls::ChartControls(QWidget* parent) : QWidget(parent)
{
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(0, 0, 0, 0);
    row->setSpacing(6);
    auto* label = new QLabel(tr("Smoothing"), this);
    m_slider = new QSlider(Qt::Horizontal, this);
    m_slider->setObjectName(QStringLiteral("smoothingSlider"));
    m_slider->setRange(0, 99);
    m_slider->setFixedWidth(140);
    m_slider->setToolTip(tr("Exponential moving average of the plotted values; the raw line stays faintly behind"));
    m_value = new QLabel(QStringLiteral("0.00"), this);
    m_value->setMinimumWidth(32);
    auto* axisLabel = new QLabel(tr("X axis"), this);
    m_axis = new QComboBox(this);
    m_axis->setObjectName(QStringLiteral("xAxisCombo"));
    m_axis->addItem(tr("Step"));
    m_axis->addItem(tr("Training time"));
    row->addWidget(label);
    row->addWidget(m_slider);
    row->addWidget(m_value);
    row->addSpacing(12);
    row->addWidget(axisLabel);
    row->addWidget(m_axis);
    row->addStretch(1);

    connect(m_slider, &QSlider::valueChanged, this, [this](int v) {
        m_value->setText(QString::number(v / 100.0, 'f', 2));
        emit smoothingChanged(v / 100.0);
    });
    connect(m_axis, &QComboBox::currentIndexChanged, this, [this](int i) {
        emit xAxisChanged(i == 0 ? LiveChart::XAxis::Step : LiveChart::XAxis::Time);
    });
}

void ChartControls::attach(LiveChart* chart)
{
    chart->setSmoothing(smoothing());
    chart->setXAxis(xAxis());
    connect(this, &ChartControls::smoothingChanged, chart, &LiveChart::setSmoothing);
    connect(this, &ChartControls::xAxisChanged, chart, &LiveChart::setXAxis);
}

double ChartControls::smoothing() const { return m_slider->value() / 100.0; }
LiveChart::XAxis ChartControls::xAxis() const
{
    return m_axis->currentIndex() == 0 ? LiveChart::XAxis::Step : LiveChart::XAxis::Time;
}
void ChartControls::setSmoothing(double weight) { m_slider->setValue(int(weight * 100 + 0.5)); }
void ChartControls::setXAxis(LiveChart::XAxis axis) { m_axis->setCurrentIndex(axis == LiveChart::XAxis::Step ? 0 : 1); }

} // namespace crucible::ui
