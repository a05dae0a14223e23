// Resume from the Runs page keeps the app responsive and the charts live: a
// run is trained, stopped, selected on Runs with the mouse and resumed with
// the Resume button; while it trains on, the Train page's charts follow every
// new step, their axes keep a handful of ticks, and the GUI thread never
// stalls (a watchdog thread ends the suite if it does, instead of hanging).
#include "core/train/run_dir.h"
#include "ui/charts/live_chart.h"
#include "ui/main_window.h"
#include "ui/pages/runs_page.h"
#include "ui/pages/train_page.h"
#include "ui/workers/training_controller.h"
#include "tests/ui/ui_test_support.h"

#include <QChart>
#include <QPushButton>
#include <QSignalSpy>
#include <QTest>
#include <QTimer>
#include <QTreeWidget>
#include <QValueAxis>

#include <atomic>
#include <chrono>
#include <thread>

using namespace crucible;
using namespace crucible::ui;

namespace {

constexpr int kRunTimeoutMs = 120'000;

int64_t lastStepIn(const QSignalSpy& spy)
{
    return spy.isEmpty() ? 0 : spy.last().at(0).value<QVector<StepMetrics>>().back().step;
}

// Ends the process if the GUI thread stops turning its event loop for
// `limit`: a frozen GUI fails the suite at once rather than at CTest's timeout.
class Watchdog {
public:
    explicit Watchdog(std::chrono::seconds limit) : m_limit(limit)
    {
        QObject::connect(&m_beat, &QTimer::timeout, [this] { m_last = now(); });
        m_beat.start(50);
        m_last = now();
        m_thread = std::thread([this] {
            while (!m_done) {
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
                if (now() - m_last > m_limit.count() * 1000)
                    qFatal("the GUI thread has not run its event loop for %lld s", qlonglong(m_limit.count()));
            }
        });
    }
    ~Watchdog()
    {
        m_done = true;
        m_thread.join();
    }

private:
    static int64_t now()
    {
        return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    }
    std::chrono::seconds m_limit;
    QTimer m_beat;
    std::atomic<int64_t> m_last{0};
    std::atomic<bool> m_done{false};
    std::thread m_thread;
};

// Ticks a value axis asks Qt Charts to label, as its range and interval say.
double tickCount(const QValueAxis* axis)
{
    if (axis->tickType() == QValueAxis::TicksFixed) return axis->tickCount();
    return (axis->max() - axis->min()) / axis->tickInterval();
}

} // namespace

class TestResumeCharts : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;

    TrainPage* trainPage() { return m_app->window->page<TrainPage>(); }
    RunsPage* runsPage() { return m_app->window->page<RunsPage>(); }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        m_app->window->resize(1280, 720);
        QVERIFY(m_app->exposed());
    }

    void cleanupTestCase() { m_app.reset(); }

    void resumedRunKeepsTheChartsLive()
    {
        Watchdog watchdog(std::chrono::seconds(60));
        // The nano preset as a new user trains it: its own batch, context,
        // schedule and evaluation cadence.
        m_app->context->config()->applyPreset(QStringLiteral("nano"));
        m_app->window->showPage(QStringLiteral("Train"));
        TrainingController* training = m_app->context->training();
        QSignalSpy finished(training, &TrainingController::finished);
        {
            QSignalSpy steps(training, &TrainingController::stepsReceived);
            QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
            QTRY_VERIFY_WITH_TIMEOUT(lastStepIn(steps) >= 20, kRunTimeoutMs);
            QTest::mouseClick(trainPage()->stopButton(), Qt::LeftButton);
            QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        }
        const QString run = training->runDir();
        const int64_t stoppedAt = RunDirectory(run.toStdString()).checkpoint_steps().back();

        // Select the run on Runs with the mouse, then press Resume.
        m_app->window->showPage(QStringLiteral("Runs"));
        runsPage()->refresh();   // runs are scanned on a worker thread
        QTRY_VERIFY_WITH_TIMEOUT(!runsPage()->scanning(), 30000);
        QTreeWidgetItem* item = runsPage()->itemFor(run);
        QVERIFY(item);
        QTreeWidget* table = runsPage()->table();
        const QRect rect = table->visualItemRect(item);
        QTest::mouseClick(table->viewport(), Qt::LeftButton, {}, QPoint(rect.center().x(), rect.center().y()));
        QCOMPARE(table->currentItem(), item);
        auto* resume = m_app->window->findChild<QPushButton*>(QStringLiteral("resumeRunButton"));
        QVERIFY(resume->isEnabled());
        QSignalSpy steps(training, &TrainingController::stepsReceived);
        QTest::mouseClick(resume, Qt::LeftButton);
        QCOMPARE(m_app->window->currentPage(), QStringLiteral("Train"));

        // The charts follow the resumed steps, drawn, with sane axes.
        QTRY_VERIFY_WITH_TIMEOUT(lastStepIn(steps) >= stoppedAt + 20, kRunTimeoutMs);
        for (LiveChart* chart : trainPage()->charts()) {
            QTRY_VERIFY2_WITH_TIMEOUT(!chart->drawnPoints(0).isEmpty() &&
                                          chart->drawnPoints(0).back().x() >= double(stoppedAt + 20),
                                      qPrintable(chart->title()), 10'000);
            QVERIFY2(chart->drawnPoints(0).front().x() <= 1.0, qPrintable(chart->title()));   // history kept
            for (QAbstractAxis* axis : chart->chart()->axes()) {
                if (auto* values = qobject_cast<QValueAxis*>(axis)) {
                    const double ticks = tickCount(values);
                    QVERIFY2(ticks >= 1 && ticks <= 30,
                             qPrintable(QStringLiteral("%1: %2 ticks on [%3, %4]")
                                            .arg(chart->title())
                                            .arg(ticks)
                                            .arg(values->min(), 0, 'g', 17)
                                            .arg(values->max(), 0, 'g', 17)));
                }
            }
        }
        QTest::mouseClick(trainPage()->stopButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kRunTimeoutMs);
    }
};

QTEST_MAIN(TestResumeCharts)
#include "tst_resume_charts.moc"
