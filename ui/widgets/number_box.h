// NumberBox: a QDoubleSpinBox for hyper-parameters that span decades
// (learning rates, epsilons). It shows values compactly ("3e-4", "0.02"),
// accepts scientific notation, keeps full precision (a value loaded from a
// config survives a round trip), and optionally steps by doubling and halving,
// the way one actually tunes a learning rate.
#pragma once

#include <QDoubleSpinBox>

namespace crucible::ui {

class NumberBox : public QDoubleSpinBox {
    Q_OBJECT
public:
    explicit NumberBox(QWidget* parent = nullptr);

    void setLogStepping(bool on) { m_logStep = on; }

    QString textFromValue(double value) const override;
    double valueFromText(const QString& text) const override;
    QValidator::State validate(QString& text, int& pos) const override;
    void stepBy(int steps) override;

private:
    bool m_logStep = false;
};

} // namespace crucible::ui
