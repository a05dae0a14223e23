#include "ui/widgets/stacked_bar.h"

#include "ui/theme.h"

#include <QPainter>
#include <QPainterPath>

namespace crucible::ui {

namespace {
constexpr int kBarHeight = 16;
constexpr int kRowHeight = 20;
constexpr int kLegendItemWidth = 190;
} // namespace

StackedBar::StackedBar(QWidget* parent) : QWidget(parent)
{
    QSizePolicy policy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    policy.setHeightForWidth(true);
    setSizePolicy(policy);
}

void StackedBar::setParts(const QVector<Part>& parts)
{
    m_parts = parts;
    updateGeometry();
    update();
}

void StackedBar::setLimit(double limit, const QString& label)
{
    const bool grew = m_limit <= 0.0;
    m_limit = limit;
    m_limitLabel = label;
    if (grew) updateGeometry();
    update();
}

void StackedBar::clearLimit()
{
    if (m_limit > 0.0) updateGeometry();
    m_limit = 0.0;
    m_limitLabel.clear();
    update();
}

int StackedBar::legendRows(int width) const
{
    const int perRow = std::max(1, width / kLegendItemWidth);
    return (int(m_parts.size()) + perRow - 1) / perRow;
}

int StackedBar::heightForWidth(int width) const
{
    // The legend wraps: a narrow bar needs more rows under it.
    return kBarHeight + 10 + legendRows(std::max(width, 1)) * kRowHeight + (m_limit > 0 ? 16 : 0);
}

QSize StackedBar::sizeHint() const { return QSize(360, heightForWidth(360)); }

QSize StackedBar::minimumSizeHint() const { return QSize(200, heightForWidth(200)); }

void StackedBar::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    double total = 0.0;
    for (const Part& part : m_parts) total += std::max(0.0, part.value);
    const double scale = std::max(total, m_limit);
    const QRectF bar(0.5, 0.5, width() - 1.0, kBarHeight);

    QPainterPath clip;
    clip.addRoundedRect(bar, 4, 4);
    p.fillPath(clip, QColor(0xf1, 0xf3, 0xf6));
    p.save();
    p.setClipPath(clip);
    double x = bar.left();
    for (const Part& part : m_parts) {
        if (scale <= 0 || part.value <= 0) continue;
        const double w = bar.width() * part.value / scale;
        p.fillRect(QRectF(x, bar.top(), w, bar.height()), part.color);
        x += w;
    }
    p.restore();

    int y = kBarHeight + 6;
    if (m_limit > 0 && scale > 0) {
        const double lx = bar.left() + bar.width() * m_limit / scale;
        const bool over = total > m_limit;
        p.setPen(QPen(over ? theme::danger() : theme::text(), 2));
        p.drawLine(QPointF(lx, bar.top() - 0.5), QPointF(lx, bar.bottom() + 3));
        QFont f = font();
        f.setPointSizeF(f.pointSizeF() - 1);
        p.setFont(f);
        const QFontMetrics fm(f);
        const int tw = fm.horizontalAdvance(m_limitLabel);
        const double tx = std::clamp(lx - tw / 2.0, 0.0, double(width() - tw));
        p.drawText(QPointF(tx, y + fm.ascent()), m_limitLabel);
        y += 16;
    }

    const int perRow = std::max(1, width() / kLegendItemWidth);
    const int itemWidth = width() / perRow;
    const QFontMetrics fm(font());
    for (int i = 0; i < m_parts.size(); ++i) {
        const Part& part = m_parts[i];
        const int col = i % perRow, row = i / perRow;
        const QRectF swatch(col * itemWidth, y + row * kRowHeight + 5, 10, 10);
        p.setPen(Qt::NoPen);
        p.setBrush(part.color);
        p.drawRoundedRect(swatch, 2, 2);
        p.setPen(theme::text());
        const QString text = part.valueText.isEmpty() ? part.label : part.label + QStringLiteral("  ") + part.valueText;
        p.drawText(QRectF(swatch.right() + 6, y + row * kRowHeight, itemWidth - 18, kRowHeight),
                   Qt::AlignVCenter | Qt::AlignLeft, fm.elidedText(text, Qt::ElideRight, itemWidth - 18));
    }
}

} // namespace crucible::ui
