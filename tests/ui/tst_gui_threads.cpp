// The GUI's threads: run scans happen off the GUI thread (the event loop keeps
// turning while a slow scan runs, and the Runs and Chat pages follow when it
// is done), the batch throttle hands items on at most once per interval and
// never loses or reorders one, and a worker thread owns its worker.
#include "tests/ui/ui_test_support.h"
#include "ui/pages/chat_page.h"
#include "ui/pages/runs_page.h"
#include "ui/workers/batch_throttle.h"
#include "ui/workers/run_scanner.h"
#include "ui/workers/worker_thread.h"

#include <QComboBox>
#include <QElapsedTimer>
#include <QPointer>
#include <QSignalSpy>
#include <QTimer>
#include <QTreeWidget>
#include <QtTest>

#include <thread>

using namespace crucible;
using namespace crucible::ui;

using test::makeRun;

class TestGuiThreads : public QObject {
    Q_OBJECT

private:
    test::IsolatedEnvironment m_env;
    QString m_bigRuns;   // many long runs: a scan that takes a while

private slots:
    void initTestCase()
    {
        m_bigRuns = m_env.path(QStringLiteral("big-runs"));
        for (int i = 0; i < 30; ++i) makeRun(m_bigRuns, QStringLiteral("run-%1").arg(i), 4000);
    }

    void scanRunsOffTheGuiThread()
    {
        RunScanner scanner;
        QSignalSpy finished(&scanner, &RunScanner::finished);
        // The GUI's event loop: a timer that must keep firing during the scan.
        int ticks = 0;
        QTimer tick;
        tick.setInterval(1);
        connect(&tick, &QTimer::timeout, this, [&] { ++ticks; });
        tick.start();

        QElapsedTimer asked;
        asked.start();
        scanner.scan({m_bigRuns});
        const qint64 returnedAfter = asked.elapsed();
        QVERIFY(scanner.busy());
        QVERIFY(scanner.runs().empty());   // the old list until the scan is done
        QVERIFY(finished.wait(60000));
        const qint64 scanTook = asked.elapsed();
        QVERIFY(!scanner.busy());
        QCOMPARE(int(scanner.runs().size()), 30);
        QCOMPARE(scanner.runs().front().steps_done, int64_t(4000));
        qInfo("scan() returned after %lld ms; the scan took %lld ms; %d timer ticks meanwhile", returnedAfter, scanTook, ticks);
        QVERIFY2(scanTook > 5 * returnedAfter, "the scan should take far longer than asking for it");
        QVERIFY2(ticks > 0, "the event loop stood still during the scan");
    }

    void onlyTheNewestScanIsKept()
    {
        RunScanner scanner;
        QSignalSpy finished(&scanner, &RunScanner::finished);
        const QString small = m_env.path(QStringLiteral("small-runs"));
        makeRun(small, QStringLiteral("only"), 3);
        scanner.scan({m_bigRuns});
        scanner.scan({small});   // asked while the first runs: the first result is dropped
        QVERIFY(finished.wait(60000));
        QTest::qWait(50);
        QCOMPARE(finished.count(), 1);
        QCOMPARE(int(scanner.runs().size()), 1);
        QCOMPARE(scanner.runs().front().name, std::string("only"));
    }

    void runsPageFollowsTheScan()
    {
        AppContext context;
        context.setRunsDir(m_bigRuns);
        RunsPage page(context);
        QSignalSpy refreshed(&page, &RunsPage::refreshed);
        QVERIFY(page.scanning());                    // the constructor asked; nothing is listed yet
        QCOMPARE(page.table()->topLevelItemCount(), 0);
        QTRY_VERIFY_WITH_TIMEOUT(!page.scanning(), 60000);
        QCOMPARE(page.table()->topLevelItemCount(), 30);
        QVERIFY(refreshed.count() >= 1);
    }

    void chatPageFollowsTheScan()
    {
        AppContext context;
        context.setRunsDir(m_bigRuns);
        ChatPage page(context);
        QVERIFY(page.scanningRuns());
        QTRY_VERIFY_WITH_TIMEOUT(!page.scanningRuns(), 60000);
        QCOMPARE(page.runCombo()->count(), 30);
    }

    void throttleBatchesAndKeepsEveryItem()
    {
        std::vector<QVector<int>> batches;
        BatchThrottle<int> throttle([&](const QVector<int>& b) { batches.push_back(b); }, std::chrono::milliseconds(40));
        QElapsedTimer clock;
        clock.start();
        std::vector<qint64> at;
        int next = 0;
        while (clock.elapsed() < 300) {
            const size_t before = batches.size();
            throttle.add(next++);
            if (batches.size() != before) at.push_back(clock.elapsed());
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        throttle.flush();
        // The first item goes at once, alone.
        QVERIFY(!batches.empty());
        QCOMPARE(batches.front(), QVector<int>{0});
        // At most one batch per interval: ~300 / 40 of them, not one per item.
        QVERIFY2(batches.size() <= 300 / 40 + 3, qPrintable(QString("%1 batches for %2 items").arg(batches.size()).arg(next)));
        QVERIFY(batches.size() >= 3);
        for (size_t i = 1; i < at.size(); ++i) QVERIFY2(at[i] - at[i - 1] >= 38, "two batches inside one interval");
        // Every item, once, in order.
        int expected = 0;
        for (const auto& b : batches)
            for (int v : b) QCOMPARE(v, expected++);
        QCOMPARE(expected, next);
        // After a reset the next item goes at once again.
        throttle.reset();
        const size_t before = batches.size();
        throttle.add(-1);
        QCOMPARE(batches.size(), before + 1);
    }

    void throttleFromAnotherThread()
    {
        // The training and chat workers add on their own thread and flush from
        // theirs: nothing may be lost across threads.
        std::atomic<int> received{0};
        BatchThrottle<int> throttle([&](const QVector<int>& b) { received += int(b.size()); }, std::chrono::milliseconds(5));
        std::thread a([&] { for (int i = 0; i < 20000; ++i) throttle.add(i); });
        std::thread b([&] { for (int i = 0; i < 20000; ++i) throttle.add(i); });
        a.join();
        b.join();
        throttle.flush();
        QCOMPARE(received.load(), 40000);
    }

    void workerThreadOwnsItsWorker()
    {
        auto* worker = new QObject;
        QPointer<QObject> alive(worker);
        QThread* thread = nullptr;
        {
            WorkerThread t(worker, QStringLiteral("test worker"));
            thread = t.thread();
            QCOMPARE(worker->thread(), thread);
            QVERIFY(thread->isRunning());
            QCOMPARE(thread->objectName(), QStringLiteral("test worker"));
        }
        QTRY_VERIFY(alive.isNull());   // deleted on its thread as the thread ended
    }
};

QTEST_MAIN(TestGuiThreads)
#include "tst_gui_threads.moc"
