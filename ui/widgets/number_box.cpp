#include "ui/widgets/number_box.h"

#include <QRegularExpression>

#include <cmath>

namespace crucible::ui {

NumberBox::NumberBox(QWidget* parent) : QDoubleSpinBox(parent)
{
    // Qt rounds the value to `decimals` places: keep enough for a float.
    setDecimals(24);
    setRange(0.0, 1e9);
    setKeyboardTracking(false);
    setAccelerated(true);
}

QString NumberBox::textFromValue(double value) const
{
    // The shortest text that reads back as the same float (configs store
    // floats): plain decimals for everyday magnitudes, "3e-4" for tiny ones.
    const double magnitude = std::fabs(value);
    if (value == 0.0) return QStringLiteral("0");
    if (magnitude >= 1e-3 && magnitude < 1e7) {
        for (int decimals = 0; decimals <= 9; ++decimals) {
            const QString s = QString::number(value, 'f', decimals);
            if (float(s.toDouble()) == float(value)) return s;
        }
    }
    for (int digits = 1; digits <= 9; ++digits) {
        QString s = QString::number(value, 'e', digits - 1);
        if (float(s.toDouble()) != float(value)) continue;
        s.replace(QStringLiteral("e+0"), QStringLiteral("e")).replace(QStringLiteral("e-0"), QStringLiteral("e-"));
        s.replace(QStringLiteral("e+"), QStringLiteral("e"));
        return s;
    }
    return QString::number(value, 'g', 9);
}

double NumberBox::valueFromText(const QString& text) const
{
    bool ok = false;
    const double v = text.trimmed().toDouble(&ok);
    return ok ? v : value();
}

QValidator::State NumberBox::validate(QString& text, int& pos) const
{
    Q_UNUSED(pos);
    const QString t = text.trimmed();
    if (t.isEmpty()) return QValidator::Intermediate;
    bool ok = false;
    const double v = t.toDouble(&ok);
    if (ok) return v >= minimum() && v <= maximum() ? QValidator::Acceptable : QValidator::Intermediate;
    // Half-typed numbers: "1e", "1e-", "0.", "-"
    static const QRegularExpression partial(QStringLiteral("^[-+]?[0-9]*\\.?[0-9]*([eE][-+]?[0-9]*)?$"));
    return partial.match(t).hasMatch() ? QValidator::Intermediate : QValidator::Invalid;
}

void NumberBox::stepBy(int steps)
{
    if (!m_logStep || value() <= 0.0) {
        QDoubleSpinBox::stepBy(steps);
        return;
    }
    setValue(std::clamp(value() * std::pow(2.0, steps), minimum(), maximum()));
}

} // namespace crucible::ui
