// Icons painted in code (this Qt has no SVG image plugin to rely on): one
// small line-art glyph per page, and the application icon, which mirrors
// resources/icons/crucible.svg.
#pragma once

#include <QColor>
#include <QIcon>
#include <QPixmap>
#include <QString>

namespace crucible::ui::icons {

// "model", "data", "train", "runs", "system", "chat", "bench"; light glyphs
// for the dark page list (white when selected).
QIcon page(const QString& kind);
// A glyph in one colour, for tool buttons on light backgrounds.
QIcon glyph(const QString& kind, const QColor& color);
QPixmap appPixmap(int size);
QIcon app();

} // namespace crucible::ui::icons
