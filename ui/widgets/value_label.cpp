#include "ui/widgets/value_label.h"

#include <QEvent>
#include <QPainter>

namespace crucible::ui {

ValueLabel::ValueLabel(const QString& widest, QWidget* parent) : QWidget(parent), m_widest(widest)
{
    setSizePolicy(QSizePolicy::Preferred, QSizePolicy::Fixed);
    setAttribute(Qt::WA_OpaquePaintEvent, false);
    const QFontMetrics fm(font());
    m_hint = QSize(fm.horizontalAdvance(m_widest) + 4, fm.height() + 2);
}

void ValueLabel::setText(const QString& text)
{
    if (text == m_text) return;
    m_text = text;
    setToolTip(fontMetrics().horizontalAdvance(text) > width() ? text : QString());
    update();
}

void ValueLabel::setColor(const QColor& color)
{
    m_color = color;
    update();
}

void ValueLabel::setAlignment(Qt::Alignment alignment)
{
    m_alignment = alignment;
    update();
}

QSize ValueLabel::sizeHint() const { return m_hint; }
QSize ValueLabel::minimumSizeHint() const { return QSize(std::min(m_hint.width(), 40), m_hint.height()); }

void ValueLabel::changeEvent(QEvent* event)
{
    // A new font (style sheet, theme) is the one time the size hint may change.
    if (event->type() == QEvent::FontChange) {
        const QFontMetrics fm(font());
        m_hint = QSize(fm.horizontalAdvance(m_widest) + 4, fm.height() + 2);
        updateGeometry();
    }
    QWidget::changeEvent(event);
}

void ValueLabel::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    p.setPen(m_color.isValid() ? m_color : palette().color(QPalette::WindowText));
    p.drawText(rect(), int(m_alignment), fontMetrics().elidedText(m_text, Qt::ElideRight, width()));
}

} // namespace crucible::ui
