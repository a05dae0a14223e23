#include "ui/icons.h"

#include <QLinearGradient>
#include <QRadialGradient>
#include <QPainter>
#include <QPainterPath>

namespace crucible::ui::icons {

namespace {

// Every glyph is drawn on a 24×24 grid with a 1.6-unit pen.
void drawGlyph(QPainter& p, const QString& kind, const QColor& color)
{
    QPen pen(color, 1.6, Qt::SolidLine, Qt::RoundCap, Qt::RoundJoin);
    p.setPen(pen);
    p.setBrush(Qt::NoBrush);
    if (kind == QLatin1String("model")) {
        const QPointF in[] = {{5, 6}, {5, 12}, {5, 18}}, mid[] = {{12, 8.5}, {12, 15.5}}, out{19, 12};
        QPen thin(color, 1.0);
        p.setPen(thin);
        for (const auto& a : in)
            for (const auto& b : mid) p.drawLine(a, b);
        for (const auto& b : mid) p.drawLine(b, out);
        p.setPen(Qt::NoPen);
        p.setBrush(color);
        for (const auto& a : in) p.drawEllipse(a, 2.2, 2.2);
        for (const auto& b : mid) p.drawEllipse(b, 2.2, 2.2);
        p.drawEllipse(out, 2.4, 2.4);
    } else if (kind == QLatin1String("data")) {
        QPainterPath doc;
        doc.moveTo(6, 3.5);
        doc.lineTo(14.5, 3.5);
        doc.lineTo(18.5, 7.5);
        doc.lineTo(18.5, 20.5);
        doc.lineTo(6, 20.5);
        doc.closeSubpath();
        p.drawPath(doc);
        p.drawPolyline(QPolygonF({{14.5, 3.5}, {14.5, 7.5}, {18.5, 7.5}}));
        p.drawLine(QPointF(9, 11), QPointF(15.5, 11));
        p.drawLine(QPointF(9, 14.2), QPointF(15.5, 14.2));
        p.drawLine(QPointF(9, 17.4), QPointF(13, 17.4));
    } else if (kind == QLatin1String("train")) {
        p.drawPolyline(QPolygonF({{4, 3.5}, {4, 20}, {20.5, 20}}));
        QPainterPath curve;
        curve.moveTo(6.5, 5);
        curve.cubicTo(8.5, 13, 11, 14.5, 13, 14.5);
        curve.cubicTo(15.5, 14.5, 16.5, 16.5, 20, 16.8);
        p.drawPath(curve);
    } else if (kind == QLatin1String("runs")) {
        for (double y : {6.5, 12.0, 17.5}) {
            p.drawLine(QPointF(9.5, y), QPointF(20, y));
            p.setBrush(color);
            p.drawEllipse(QPointF(5, y), 1.6, 1.6);
            p.setBrush(Qt::NoBrush);
        }
    } else if (kind == QLatin1String("system")) {
        p.drawRoundedRect(QRectF(7, 7, 10, 10), 1.8, 1.8);
        p.drawRect(QRectF(10, 10, 4, 4));
        for (double t : {9.5, 12.0, 14.5}) {
            p.drawLine(QPointF(t, 3.5), QPointF(t, 7));
            p.drawLine(QPointF(t, 17), QPointF(t, 20.5));
            p.drawLine(QPointF(3.5, t), QPointF(7, t));
            p.drawLine(QPointF(17, t), QPointF(20.5, t));
        }
    } else if (kind == QLatin1String("chat")) {
        QPainterPath bubble;
        bubble.addRoundedRect(QRectF(3.5, 4.5, 17, 12), 3.5, 3.5);
        p.drawPath(bubble);
        p.drawPolyline(QPolygonF({{8, 16.5}, {7, 20.5}, {12, 16.5}}));
        p.setBrush(color);
        p.setPen(Qt::NoPen);
        for (double x : {8.5, 12.0, 15.5}) p.drawEllipse(QPointF(x, 10.5), 1.1, 1.1);
    } else if (kind == QLatin1String("bench")) {
        p.drawArc(QRectF(3.5, 5.5, 17, 17), 0, 180 * 16);
        p.drawLine(QPointF(12, 14), QPointF(16.5, 8.5));
        p.setBrush(color);
        p.drawEllipse(QPointF(12, 14), 1.6, 1.6);
        p.drawLine(QPointF(3.5, 14), QPointF(20.5, 14));
    } else if (kind == QLatin1String("menu")) {
        p.setPen(Qt::NoPen);
        p.setBrush(color);
        for (double x : {6.0, 12.0, 18.0}) p.drawEllipse(QPointF(x, 12), 1.7, 1.7);
    } else if (kind == QLatin1String("add")) {
        p.drawLine(QPointF(12, 5), QPointF(12, 19));
        p.drawLine(QPointF(5, 12), QPointF(19, 12));
    } else if (kind == QLatin1String("folder")) {
        QPainterPath f;
        f.moveTo(3.5, 6);
        f.lineTo(9.5, 6);
        f.lineTo(11.5, 8.5);
        f.lineTo(20.5, 8.5);
        f.lineTo(20.5, 18.5);
        f.lineTo(3.5, 18.5);
        f.closeSubpath();
        p.drawPath(f);
    } else if (kind == QLatin1String("remove")) {
        p.drawLine(QPointF(6.5, 6.5), QPointF(17.5, 17.5));
        p.drawLine(QPointF(17.5, 6.5), QPointF(6.5, 17.5));
    } else if (kind == QLatin1String("refresh")) {
        p.drawArc(QRectF(5, 5, 14, 14), 60 * 16, 280 * 16);
        p.drawPolyline(QPolygonF({{15, 3.8}, {15.6, 7.4}, {12, 8}}));
    } else {
        p.drawEllipse(QPointF(12, 12), 7, 7);
    }
}

QPixmap renderGlyph(const QString& kind, const QColor& color, int size)
{
    QPixmap pm(size, size);
    pm.fill(Qt::transparent);
    QPainter p(&pm);
    p.setRenderHint(QPainter::Antialiasing);
    p.scale(size / 24.0, size / 24.0);
    drawGlyph(p, kind, color);
    return pm;
}

} // namespace

QIcon glyph(const QString& kind, const QColor& color)
{
    QIcon icon;
    for (int size : {16, 20, 24, 32, 48}) icon.addPixmap(renderGlyph(kind, color, size));
    return icon;
}

QIcon page(const QString& kind)
{
    QIcon icon;
    for (int size : {20, 24, 32, 48}) {
        icon.addPixmap(renderGlyph(kind, QColor(0xc8, 0xce, 0xd8), size), QIcon::Normal);
        icon.addPixmap(renderGlyph(kind, Qt::white, size), QIcon::Selected);
    }
    return icon;
}

QPixmap appPixmap(int size)
{
    // The same drawing as resources/icons/crucible.svg, on a 64×64 grid.
    QPixmap pm(size, size);
    pm.fill(Qt::transparent);
    QPainter p(&pm);
    p.setRenderHint(QPainter::Antialiasing);
    p.scale(size / 64.0, size / 64.0);

    QLinearGradient bg(0, 0, 0, 64);
    bg.setColorAt(0, QColor(0x27, 0x30, 0x44));
    bg.setColorAt(1, QColor(0x11, 0x16, 0x22));
    p.setPen(Qt::NoPen);
    p.setBrush(bg);
    p.drawRoundedRect(QRectF(2, 2, 60, 60), 14, 14);

    // The heat of the melt, lighting the space above the vessel.
    QRadialGradient glow(QPointF(32, 30), 24);
    glow.setColorAt(0, QColor(249, 115, 22, 110));
    glow.setColorAt(1, QColor(249, 115, 22, 0));
    p.setBrush(glow);
    p.drawRoundedRect(QRectF(2, 2, 60, 60), 14, 14);

    // A loss curve: a steep fall, then the long flattening tail.
    QPainterPath curve;
    curve.moveTo(12, 8.5);
    curve.cubicTo(14.5, 17, 18, 20.2, 25, 21);
    curve.cubicTo(33, 21.9, 44, 22, 52, 22.2);
    QPen curvePen(QColor(0xfb, 0xbf, 0x24), 2.8, Qt::SolidLine, Qt::RoundCap);
    p.setPen(curvePen);
    p.setBrush(Qt::NoBrush);
    p.drawPath(curve);
    p.setPen(Qt::NoPen);
    p.setBrush(QColor(0xfe, 0xf3, 0xc7));
    p.drawEllipse(QPointF(12, 8.5), 2.2, 2.2);

    // The crucible: a tapered vessel with a rim.
    QPainterPath body;
    body.moveTo(14, 29);
    body.lineTo(50, 29);
    body.cubicTo(49.5, 41, 46, 54, 38, 54.5);
    body.lineTo(26, 54.5);
    body.cubicTo(18, 54, 14.5, 41, 14, 29);
    body.closeSubpath();
    QLinearGradient metal(14, 0, 50, 0);
    metal.setColorAt(0, QColor(0xcb, 0xd5, 0xe1));
    metal.setColorAt(0.45, QColor(0xf1, 0xf5, 0xf9));
    metal.setColorAt(1, QColor(0x94, 0xa3, 0xb8));
    p.setPen(Qt::NoPen);
    p.setBrush(metal);
    p.drawPath(body);
    p.setBrush(QColor(0xe2, 0xe8, 0xf0));
    p.drawRoundedRect(QRectF(12, 25.5, 40, 5.5), 2.75, 2.75);

    // Molten surface.
    QLinearGradient melt(0, 26, 0, 31);
    melt.setColorAt(0, QColor(0xfd, 0xba, 0x74));
    melt.setColorAt(1, QColor(0xea, 0x58, 0x0c));
    p.setBrush(melt);
    p.drawEllipse(QRectF(16, 26.5, 32, 3.6));
    return pm;
}

QIcon app()
{
    QIcon icon;
    for (int size : {16, 24, 32, 48, 64, 128, 256}) icon.addPixmap(appPixmap(size));
    return icon;
}

} // namespace crucible::ui::icons
