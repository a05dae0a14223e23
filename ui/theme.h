// The look of the app: a light Fusion palette with a dark page list, card-like
// group boxes, and the colours charts and status texts share.
#pragma once

#include <QColor>

class QApplication;

namespace crucible::ui::theme {

void apply(QApplication& app);

QColor accent();
QColor text();
QColor mutedText();
QColor border();
QColor danger();
QColor warning();
QColor success();
QColor sidebar();

// Series colours: 0 train (orange), 1 validation (blue), then a palette
// chosen to stay distinct when several runs are overlaid.
QColor series(int index);

} // namespace crucible::ui::theme
