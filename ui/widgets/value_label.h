// ValueLabel: a one-line label for values that change many times a second
// (the step, the loss, tokens/s, the run's status). QLabel::setText asks the
// window to lay itself out again, which costs more the more word-wrapped
// labels a page holds; during a CPU run that time is taken from the trainer.
// This label keeps a fixed size hint and only repaints itself.
#pragma once

#include <QWidget>

namespace crucible::ui {

class ValueLabel : public QWidget {
    Q_OBJECT
public:
    // `widest` is a sample of the longest text expected: it sets the width hint.
    explicit ValueLabel(const QString& widest, QWidget* parent = nullptr);

    QString text() const { return m_text; }
    void setText(const QString& text);
    void setColor(const QColor& color);
    void setAlignment(Qt::Alignment alignment);

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;
    void changeEvent(QEvent* event) override;

private:
    QString m_text;
    QString m_widest;
    QColor m_color;
    Qt::Alignment m_alignment = Qt::AlignLeft | Qt::AlignVCenter;
    QSize m_hint;
};

} // namespace crucible::ui
