// The mouse wheel over the Train settings scrolls the panel and leaves the
// spin boxes and combo boxes alone unless one has the focus; a focused one
// still steps with the wheel. The wheel events are spontaneous, as the window
// system's are, so QApplication gives focus by policy and propagates them to
// the parents exactly as it does for a real mouse.
#include "ui/main_window.h"
#include "ui/pages/train_page.h"
#include "tests/ui/ui_test_support.h"

#include <QAbstractSpinBox>
#include <QComboBox>
#include <QScrollArea>
#include <QScrollBar>
#include <QSpinBox>
#include <QTest>
#include <QWheelEvent>
#include <QtTest/qtestspontaneevent.h>

using namespace crucible;
using namespace crucible::ui;

namespace {

// One notch of a mouse wheel over `widget`'s centre, delivered to the
// innermost child under the pointer (a spin box's line edit), as the window
// system delivers it.
void wheelOver(QWidget* widget, int notches)
{
    const QPoint local = widget->rect().center();
    QWidget* target = widget->childAt(local);
    if (!target) target = widget;
    const QPointF at = target->mapFrom(widget, local);
    const QPointF global = widget->mapToGlobal(local);
    QWheelEvent event(at, global, QPoint(), QPoint(0, 120 * notches), Qt::NoButton, Qt::NoModifier,
                      Qt::NoScrollPhase, false);
    // sendEvent() would clear the spontaneous flag; QApplication::notify()
    // is where the window system's events enter the widgets.
    QSpontaneKeyEvent::setSpontaneous(&event);
    QApplication::instance()->notify(target, &event);
}

} // namespace

class TestWheelGuard : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;

    QScrollArea* form()
    {
        return m_app->window->page<TrainPage>()->findChild<QScrollArea*>(QStringLiteral("formScroll"));
    }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        // Small enough that the settings panel scrolls.
        m_app->window->resize(1280, 720);
        m_app->window->showPage(QStringLiteral("Train"));
        QVERIFY(m_app->exposed());
        QTRY_VERIFY(form()->verticalScrollBar()->maximum() > 0);
    }

    void cleanupTestCase() { m_app.reset(); }

    void windowFitsTheScreen()
    {
        // Every page fits a 1280×720 screen: the window took the size asked.
        QCOMPARE(m_app->window->size(), QSize(1280, 720));
    }

    void boxesLoseWheelFocus()
    {
        const auto spins = form()->findChildren<QAbstractSpinBox*>();
        const auto combos = form()->findChildren<QComboBox*>();
        QVERIFY(!spins.isEmpty());
        QVERIFY(!combos.isEmpty());
        for (QAbstractSpinBox* s : spins) QCOMPARE(s->focusPolicy(), Qt::StrongFocus);
        for (QComboBox* c : combos) QCOMPARE(c->focusPolicy(), Qt::StrongFocus);
    }

    void unfocusedBoxesScrollThePanel()
    {
        QScrollBar* bar = form()->verticalScrollBar();
        bar->setValue(0);
        m_app->find<QWidget>("startButton")->setFocus();
        // Every visible spin box and combo box in the top of the panel, one
        // notch down over each: the panel scrolls, no value changes.
        int tried = 0;
        for (QWidget* w : form()->widget()->findChildren<QWidget*>()) {
            auto* spin = qobject_cast<QAbstractSpinBox*>(w);
            auto* combo = qobject_cast<QComboBox*>(w);
            if ((!spin && !combo) || !w->isVisible() || !w->isEnabled()) continue;
            const QRect inView(w->mapTo(form()->viewport(), QPoint(0, 0)), w->size());
            if (!form()->viewport()->rect().contains(inView)) continue;
            const QString before = spin ? spin->text() : combo->currentText();
            const int scrolled = bar->value();
            wheelOver(w, -1);
            QVERIFY2(!w->hasFocus(), qPrintable(w->objectName()));
            QCOMPARE(spin ? spin->text() : combo->currentText(), before);
            if (scrolled < bar->maximum()) QVERIFY2(bar->value() > scrolled, qPrintable(before));
            bar->setValue(scrolled);
            ++tried;
        }
        QVERIFY(tried >= 3);
    }

    void focusedSpinBoxStillSteps()
    {
        QSpinBox* spin = nullptr;
        for (QSpinBox* s : form()->findChildren<QSpinBox*>())
            if (s->isVisible() && s->isEnabled() && s->value() < s->maximum()) {
                spin = s;
                break;
            }
        QVERIFY(spin);
        form()->ensureWidgetVisible(spin);
        QTest::mouseClick(spin->findChild<QLineEdit*>(), Qt::LeftButton);
        QTRY_VERIFY(spin->hasFocus());
        const int before = spin->value();
        const int scrolled = form()->verticalScrollBar()->value();
        wheelOver(spin, 1);
        QCOMPARE(spin->value(), before + spin->singleStep());
        QCOMPARE(form()->verticalScrollBar()->value(), scrolled);
    }
};

QTEST_MAIN(TestWheelGuard)
#include "tst_wheel_guard.moc"
