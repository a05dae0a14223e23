// The GUI under abuse: a seeded monkey clicks, types, scrolls and resizes
// its way through every page for a fixed number of events while a tiny run
// trains, the way an impatient user would. Nothing may crash, assert or log
// a critical message, dialogs it opens are dismissed, and afterwards the app
// still stops its run cleanly. The same seed replays the same events:
// CRUCIBLE_MONKEY_SEED and CRUCIBLE_MONKEY_EVENTS change them.
//
// Starting runs is left to the suite (it restarts the tiny run whenever the
// monkey has stopped it), and the server switch is not touched: a random
// model size or a listening port would test the machine, not the app.
#include "ui/benchmark/event_loop_probe.h"
#include "ui/widgets/serve_panel.h"
#include "ui/workers/training_controller.h"
#include "tests/ui/ui_test_support.h"

#include <QAbstractButton>
#include <QAbstractItemView>
#include <QAbstractSlider>
#include <QAbstractSpinBox>
#include <QComboBox>
#include <QDialog>
#include <QElapsedTimer>
#include <QKeyEvent>
#include <QLineEdit>
#include <QMenu>
#include <QPlainTextEdit>
#include <QTabBar>
#include <QTest>
#include <QTextEdit>
#include <QTimer>
#include <QWheelEvent>

#include <atomic>
#include <random>

using namespace crucible;
using namespace crucible::ui;

namespace {

std::atomic<int> g_criticalMessages{0};
QtMessageHandler g_previousHandler = nullptr;

void countCriticalMessages(QtMsgType type, const QMessageLogContext& context, const QString& message)
{
    if (type == QtCriticalMsg || type == QtFatalMsg) ++g_criticalMessages;
    if (g_previousHandler) g_previousHandler(type, context, message);
}

int environmentInt(const char* name, int fallback)
{
    bool ok = false;
    const int value = qEnvironmentVariableIntValue(name, &ok);
    return ok ? value : fallback;
}

// What the monkey may not press: it would start work whose size the monkey
// chose (Start, Resume) or open a port (the server panel).
bool offLimits(const QWidget* w)
{
    for (const QWidget* p = w; p; p = p->parentWidget()) {
        if (qobject_cast<const ServePanel*>(p)) return true;
        const QString name = p->objectName();
        if (name == QLatin1String("startButton") || name == QLatin1String("resumeRunButton")) return true;
    }
    return false;
}

class Monkey {
public:
    Monkey(QWidget* window, uint32_t seed) : m_window(window), m_rng(seed) {}

    // One user action on a random visible, enabled widget of the window; the
    // slowest action is remembered (what it touched, how long it held the
    // GUI thread), so a stutter can be traced to its widget.
    void act()
    {
        QElapsedTimer clock;
        clock.start();
        QString touched = actOnce();
        const double ms = double(clock.nsecsElapsed()) / 1e6;
        if (ms > m_slowestMs) {
            m_slowestMs = ms;
            m_slowest = touched;
        }
    }

    int events() const { return m_events; }
    double slowestMs() const { return m_slowestMs; }
    const QString& slowest() const { return m_slowest; }

private:
    QString actOnce()
    {
        ++m_events;
        if (pick(40) == 0) {
            static const QSize sizes[] = {{1280, 720}, {1920, 1080}, {900, 600}, {1600, 1000}};
            m_window->resize(sizes[pick(4)]);
            return QStringLiteral("window resize");
        }
        QList<QWidget*> candidates;
        for (QWidget* w : m_window->findChildren<QWidget*>())
            if (w->isVisible() && w->isEnabled() && !w->visibleRegion().isEmpty() && !offLimits(w)) candidates.push_back(w);
        if (candidates.isEmpty()) return QString();
        QWidget* w = candidates[int(pick(uint32_t(candidates.size())))];
        const QString touched = QString::fromLatin1(w->metaObject()->className()) + QLatin1Char(' ') + w->objectName();
        if (auto* tabs = qobject_cast<QTabBar*>(w); tabs && tabs->count() > 0) {
            QTest::mouseClick(tabs, Qt::LeftButton, {}, tabs->tabRect(int(pick(uint32_t(tabs->count())))).center());
        } else if (qobject_cast<QAbstractSpinBox*>(w) || qobject_cast<QLineEdit*>(w) || qobject_cast<QPlainTextEdit*>(w) ||
                   qobject_cast<QTextEdit*>(w)) {
            type(w);
        } else if (qobject_cast<QComboBox*>(w) || qobject_cast<QAbstractSlider*>(w)) {
            static const Qt::Key keys[] = {Qt::Key_Down, Qt::Key_Up, Qt::Key_PageDown, Qt::Key_End, Qt::Key_Home};
            w->setFocus();
            QTest::keyClick(w, keys[pick(5)]);
        } else if (auto* view = qobject_cast<QAbstractItemView*>(w)) {
            QWidget* port = view->viewport();
            if (pick(3) == 0) {
                static const Qt::Key keys[] = {Qt::Key_Down, Qt::Key_Up, Qt::Key_Space, Qt::Key_Return, Qt::Key_Delete};
                view->setFocus();
                QTest::keyClick(view, keys[pick(5)]);
            } else {
                QTest::mouseClick(port, Qt::LeftButton, {}, randomPoint(port));
            }
        } else if (qobject_cast<QAbstractButton*>(w)) {
            QTest::mouseClick(w, Qt::LeftButton, {}, randomPoint(w));
        } else if (pick(2) == 0) {
            wheel(w);
        } else {
            QTest::mouseClick(w, pick(4) == 0 ? Qt::RightButton : Qt::LeftButton, {}, randomPoint(w));
        }
        return touched;
    }

    uint32_t pick(uint32_t n) { return std::uniform_int_distribution<uint32_t>(0, n - 1)(m_rng); }

    QPoint randomPoint(const QWidget* w)
    {
        return {int(pick(uint32_t(std::max(1, w->width())))), int(pick(uint32_t(std::max(1, w->height()))))};
    }

    // Text a hurried or careless person types: numbers in every form, signs,
    // letters, blanks, the odd control key.
    void type(QWidget* w)
    {
        static const char* samples[] = {"0", "-1", "1e9", "3.5", "abc", "", " ", "99999999999", "0.0001", "nan",
                                        "1,5", "-", "12", "ROMEO:", "\t", "∞", "2048"};
        w->setFocus();
        if (pick(2) == 0) QTest::keyClick(w, Qt::Key_A, Qt::ControlModifier);
        for (const QChar c : QString::fromUtf8(samples[pick(std::size(samples))])) {
            if (c.unicode() < 128) {
                QTest::keyClick(w, char(c.unicode()));
            } else {   // QTest's key tables are ASCII only: a composed character, as an input method delivers it
                QKeyEvent press(QEvent::KeyPress, Qt::Key_unknown, Qt::NoModifier, QString(c));
                QKeyEvent release(QEvent::KeyRelease, Qt::Key_unknown, Qt::NoModifier, QString(c));
                QCoreApplication::sendEvent(w, &press);
                QCoreApplication::sendEvent(w, &release);
            }
        }
        static const Qt::Key ends[] = {Qt::Key_Return, Qt::Key_Tab, Qt::Key_Escape, Qt::Key_Up, Qt::Key_Backspace};
        QTest::keyClick(w, ends[pick(5)]);
    }

    void wheel(QWidget* w)
    {
        const QPointF at = randomPoint(w);
        const QPoint delta(0, pick(2) ? 120 : -120);
        QWheelEvent event(at, w->mapToGlobal(at), QPoint(), delta, Qt::NoButton, Qt::NoModifier, Qt::NoScrollPhase, false);
        QCoreApplication::sendEvent(w, &event);
    }

    QWidget* m_window;
    std::mt19937 m_rng;
    int m_events = 0;
    double m_slowestMs = 0.0;
    QString m_slowest;
};

} // namespace

class TestGuiMonkey : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { g_previousHandler = qInstallMessageHandler(countCriticalMessages); }
    void cleanupTestCase() { qInstallMessageHandler(g_previousHandler); }

    void survivesRandomInputWhileTraining()
    {
        const uint32_t seed = uint32_t(environmentInt("CRUCIBLE_MONKEY_SEED", 20261208));
        const int total = environmentInt("CRUCIBLE_MONKEY_EVENTS", 1500);
        auto app = std::make_unique<test::AppUnderTest>();
        QVERIFY(app->exposed());
        app->window->resize(1280, 720);
        TrainingController* training = app->context->training();

        int runsStarted = 0;
        const auto startTinyRun = [&] {
            test::makeQuick(*app->context->config(), 400);
            training->start(app->context->config()->config(),
                            app->env.runsDir() + QStringLiteral("/monkey-%1").arg(++runsStarted));
        };
        startTinyRun();

        Monkey monkey(app->window.get(), seed);
        EventLoopProbe probe;
        probe.start();
        // A dialog or menu the monkey opened is dismissed, as an impatient user
        // would. This needs a timer of its own: a modal dialog runs a nested
        // event loop inside the driver's tick, and Qt never re-enters a timer
        // that is still in its slot.
        QTimer dismisser;
        dismisser.setInterval(20);
        QObject::connect(&dismisser, &QTimer::timeout, [] {
            if (QWidget* popup = QApplication::activePopupWidget()) popup->close();
            else if (auto* dialog = qobject_cast<QDialog*>(QApplication::activeModalWidget())) dialog->reject();
            else if (QWidget* modal = QApplication::activeModalWidget()) modal->close();
        });
        dismisser.start();
        // Driven from the event loop, as real input arrives, so that the probe
        // sees how long each action keeps the GUI thread busy. Nothing behind
        // a modal dialog or an open menu is touched.
        QTimer driver;
        driver.setInterval(2);
        QObject::connect(&driver, &QTimer::timeout, [&] {
            if (QApplication::activePopupWidget() || QApplication::activeModalWidget()) return;
            if (!training->isActive() && monkey.events() % 100 == 0) startTinyRun();
            if (monkey.events() < total) monkey.act();
        });
        driver.start();
        QTRY_VERIFY_WITH_TIMEOUT(monkey.events() >= total, 600'000);
        driver.stop();
        dismisser.stop();
        probe.stop();
        const EventLoopProbe::Stats lag = probe.stats();
        qInfo("monkey: seed %u, %d events, %d runs started; event loop lag p50 %.1f ms, p99 %.1f ms, max %.1f ms; "
              "slowest action %.1f ms (%s)",
              seed, monkey.events(), runsStarted, lag.p50_ms, lag.p99_ms, lag.max_ms, monkey.slowestMs(),
              qPrintable(monkey.slowest()));

        // Whatever the monkey left behind, the app still stops its run and quits.
        if (QWidget* modal = QApplication::activeModalWidget()) modal->close();
        if (training->isActive()) training->stop();
        QTRY_VERIFY_WITH_TIMEOUT(!training->isActive(), 120'000);
        QVERIFY(app->window->isVisible());
        app.reset();
        QCOMPARE(g_criticalMessages.load(), 0);
    }
};

QTEST_MAIN(TestGuiMonkey)
#include "tst_gui_monkey.moc"
