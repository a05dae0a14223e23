#include "ui/widgets/wheel_guard.h"

#include <QAbstractSpinBox>
#include <QApplication>
#include <QComboBox>
#include <QEvent>

namespace crucible::ui {

namespace {

// The widgets whose value a stray wheel changes.
QWidget* guardedWidget(QObject* object)
{
    if (auto* spin = qobject_cast<QAbstractSpinBox*>(object)) return spin;
    if (auto* combo = qobject_cast<QComboBox*>(object)) return combo;
    return nullptr;
}

} // namespace

void WheelGuard::install(QApplication* app)
{
    if (!app || app->findChild<WheelGuard*>(QString(), Qt::FindDirectChildrenOnly)) return;
    app->installEventFilter(new WheelGuard(app));
}

bool WheelGuard::eventFilter(QObject* watched, QEvent* event)
{
    // Every event of the application passes here: decide on the type first.
    const QEvent::Type type = event->type();
    if (type != QEvent::Wheel && type != QEvent::Polish) return false;
    QWidget* widget = guardedWidget(watched);
    if (!widget) return false;
    if (type == QEvent::Polish) {
        if (widget->focusPolicy() == Qt::WheelFocus) widget->setFocusPolicy(Qt::StrongFocus);
        return false;
    }
    if (widget->hasFocus()) return false;
    // Not ours: ignored and filtered, the event travels on to the parents
    // (the scroll area that holds the form).
    event->ignore();
    return true;
}

} // namespace crucible::ui
