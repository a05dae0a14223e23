// WheelGuard: spin boxes and combo boxes take the mouse wheel only when they
// have the keyboard focus.
//
// Qt gives both of them Qt::WheelFocus, so scrolling a settings panel with the
// wheel changes whatever value passes under the pointer (a batch size that
// goes 1 → 15 on its way down the page). The guard is one event filter on the
// application: it lowers those widgets to Qt::StrongFocus when they are
// polished (a click or Tab still focuses them), and passes a wheel event that
// reaches an unfocused one on to its parent, so the panel scrolls instead.
#pragma once

#include <QObject>

class QApplication;

namespace crucible::ui {

class WheelGuard : public QObject {
    Q_OBJECT
public:
    // Installs the guard on the application once; later calls do nothing.
    static void install(QApplication* app);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    explicit WheelGuard(QObject* parent) : QObject(parent) {}
};

} // namespace crucible::ui
