// StackedBar: one horizontal bar split into coloured parts with a legend
// (parameters by component, memory by kind), and an optional limit marker
// (the device's free memory) drawn across it.
#pragma once

#include <QColor>
#include <QString>
#include <QVector>
#include <QWidget>

namespace crucible::ui {

class StackedBar : public QWidget {
    Q_OBJECT
public:
    struct Part {
        QString label;
        double value = 0.0;
        QColor color;
        QString valueText;   // shown in the legend
    };

    explicit StackedBar(QWidget* parent = nullptr);

    void setParts(const QVector<Part>& parts);
    // A limit to compare the total with: the bar's scale becomes
    // max(total, limit), and the marker shows where the limit falls.
    void setLimit(double limit, const QString& label);
    void clearLimit();
    const QVector<Part>& parts() const { return m_parts; }

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;
    bool hasHeightForWidth() const override { return true; }
    int heightForWidth(int width) const override;

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    int legendRows(int width) const;

    QVector<Part> m_parts;
    double m_limit = 0.0;
    QString m_limitLabel;
};

} // namespace crucible::ui
