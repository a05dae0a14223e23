// Training from the GUI: Start produces batched step signals and chart
// points; Pause, Resume and Stop behave (Stop writes a checkpoint and the run
// shows on the Runs page, from where it resumes); two finished runs overlay
// on one chart; closing the window mid-run asks, then stops cleanly.
#include "core/train/run_catalog.h"
#include "core/train/run_dir.h"
#include "ui/app_context.h"
#include "ui/charts/live_chart.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/runs_page.h"
#include "ui/pages/train_page.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/training_controller.h"
#include "ui/workers/training_sink_adapter.h"
#include "tests/support/cli_process.h"
#include "tests/ui/ui_test_support.h"

#include <QComboBox>
#include <QMessageBox>
#include <QPushButton>
#include <QSignalSpy>
#include <QTest>
#include <QTextBrowser>
#include <QTimer>
#include <QTreeWidget>

#include <csignal>

using namespace crucible;
using namespace crucible::ui;

namespace {

constexpr int kRunTimeoutMs = 120'000;

int stepsIn(const QSignalSpy& spy)
{
    int n = 0;
    for (const auto& args : spy) n += int(args.at(0).value<QVector<StepMetrics>>().size());
    return n;
}

int64_t lastStepIn(const QSignalSpy& spy)
{
    return spy.isEmpty() ? 0 : spy.last().at(0).value<QVector<StepMetrics>>().back().step;
}

RunSummary summaryIn(const QSignalSpy& spy) { return spy.last().at(0).value<RunSummary>(); }

} // namespace

class TestTraining : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;
    QString m_adamwRun;

    TrainPage* trainPage() { return m_app->window->page<TrainPage>(); }
    RunsPage* runsPage() { return m_app->window->page<RunsPage>(); }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
    }

    void cleanupTestCase()
    {
        m_app.reset();
    }

    void sinkBatchesStepsAndFlushesBeforeOtherEvents()
    {
        TrainingSinkAdapter sink;
        sink.setMinimumInterval(std::chrono::hours(1));
        QSignalSpy steps(&sink, &TrainingSinkAdapter::stepsReady);
        QSignalSpy evals(&sink, &TrainingSinkAdapter::evalReady);
        for (int i = 1; i <= 1000; ++i) {
            StepMetrics m;
            m.step = i;
            sink.on_step(m);
        }
        // The first step goes out at once; the rest wait for the interval...
        QCOMPARE(steps.count(), 1);
        // ...or for any other event, which never overtakes them.
        sink.on_eval(EvalMetrics{});
        QCOMPARE(steps.count(), 2);
        QCOMPARE(evals.count(), 1);
        QCOMPARE(stepsIn(steps), 1000);
        QCOMPARE(lastStepIn(steps), int64_t(1000));
    }

    void startProducesStepsAndChartPoints()
    {
        m_app->window->showPage(QStringLiteral("Model"));
        auto* preset = m_app->window->findChild<QComboBox*>(QStringLiteral("presetCombo"));
        QVERIFY(test::chooseInCombo(preset, QStringLiteral("micro")));
        QVERIFY(test::chooseInCombo(preset, QStringLiteral("nano")));
        QCOMPARE(m_app->context->config()->config().model.name, std::string("nano"));
        test::makeQuick(*m_app->context->config(), 6);

        m_app->window->showPage(QStringLiteral("Train"));
        TrainingController* training = m_app->context->training();
        QSignalSpy steps(training, &TrainingController::stepsReceived);
        QSignalSpy evals(training, &TrainingController::evalReceived);
        QSignalSpy samples(training, &TrainingController::sampleReceived);
        QSignalSpy finished(training, &TrainingController::finished);
        QSignalSpy started(training, &TrainingController::started);
        QVERIFY(trainPage()->startButton()->isEnabled());
        QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
        QVERIFY(training->isActive());
        QVERIFY(!trainPage()->startButton()->isEnabled());
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        QVERIFY2(summaryIn(finished).outcome == RunOutcome::finished, summaryIn(finished).error.c_str());

        QVERIFY(steps.count() >= 1);
        QCOMPARE(stepsIn(steps), 6);
        QCOMPARE(lastStepIn(steps), int64_t(6));
        QCOMPARE(evals.count(), 2);     // steps 3 and 6
        QCOMPARE(samples.count(), 2);
        LiveChart* loss = trainPage()->lossChart();
        QCOMPARE(loss->pointCount(0), size_t(6));
        QCOMPARE(loss->pointCount(1), size_t(2));
        QTRY_COMPARE(loss->drawnPoints(0).size(), 6);
        for (LiveChart* chart : trainPage()->charts()) QCOMPARE(chart->pointCount(0), size_t(6));

        // Memory is measured each step (the process's resident set on the
        // CPU), not the estimate, which is the dashed line beside it.
        QCOMPARE(started.count(), 1);
        const int64_t estimate = started.first().at(0).value<RunInfo>().estimated_memory_bytes;
        QVERIFY(estimate > 0);
        for (const auto& batch : steps)
            for (const StepMetrics& m : batch.at(0).value<QVector<StepMetrics>>()) {
                QVERIFY(m.memory_bytes > 0);
                QVERIFY(m.memory_bytes != estimate);
            }
        LiveChart* memory = trainPage()->memoryChart();
        const int dashed = trainPage()->memoryEstimateSeries();
        QVERIFY(memory && dashed > 0);
        QVERIFY(memory->seriesDashed(dashed) && !memory->seriesDashed(0));
        QCOMPARE(memory->pointCount(dashed), size_t(6));
        QTRY_COMPARE(memory->drawnPoints(dashed).size(), 6);
        QCOMPARE(memory->drawnPoints(dashed).front().y(), double(estimate) * 1e-6);
        QVERIFY(memory->drawnPoints(0).front().y() != memory->drawnPoints(dashed).front().y());
        QVERIFY(!m_app->window->findChild<QTextBrowser*>(QStringLiteral("samplesView"))->toPlainText().isEmpty());
        auto* banner = m_app->window->findChild<MessageBanner*>(QStringLiteral("trainBanner"));
        QCOMPARE(banner->kind(), MessageBanner::Kind::Success);
        QVERIFY(trainPage()->startButton()->isEnabled());

        m_adamwRun = training->runDir();
        QCOMPARE(m_app->context->currentRun(), m_adamwRun);
        QVERIFY(RunDirectory(m_adamwRun.toStdString()).latest_checkpoint().has_value());
    }

    void finishedRunAppearsOnRunsWithItsMetrics()
    {
        m_app->window->showPage(QStringLiteral("Runs"));
        QTRY_VERIFY_WITH_TIMEOUT(!runsPage()->scanning(), 30000);   // runs are scanned on a worker thread
        QTreeWidgetItem* item = runsPage()->itemFor(m_adamwRun);
        QVERIFY(item);
        QCOMPARE(item->text(7), QStringLiteral("finished"));
        QCOMPARE(item->text(3), QStringLiteral("6 / 6"));
        QVERIFY(!item->text(4).isEmpty());   // train loss
        QVERIFY(!item->text(5).isEmpty());   // validation loss
    }

    void pauseResumeAndStop()
    {
        test::makeQuick(*m_app->context->config(), 5000);
        m_app->window->showPage(QStringLiteral("Train"));
        TrainingController* training = m_app->context->training();
        QSignalSpy steps(training, &TrainingController::stepsReceived);
        QSignalSpy paused(training, &TrainingController::pausedChanged);
        QSignalSpy finished(training, &TrainingController::finished);
        QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
        // Pause at once: the trainer holds before its first step.
        QVERIFY(trainPage()->pauseButton()->isEnabled());
        QTest::mouseClick(trainPage()->pauseButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(paused.count(), 1, kRunTimeoutMs);
        QCOMPARE(paused.at(0).at(0).toBool(), true);
        QCOMPARE(training->state(), TrainingController::State::Paused);
        QCOMPARE(trainPage()->pauseButton()->text(), QStringLiteral("Resume"));
        QTest::qWait(300);
        QCOMPARE(stepsIn(steps), 0);

        QTest::mouseClick(trainPage()->pauseButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(paused.count(), 2, kRunTimeoutMs);
        QCOMPARE(paused.at(1).at(0).toBool(), false);
        QTRY_VERIFY_WITH_TIMEOUT(stepsIn(steps) >= 3, kRunTimeoutMs);

        QTest::mouseClick(trainPage()->stopButton(), Qt::LeftButton);
        QCOMPARE(training->state(), TrainingController::State::Stopping);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        const RunSummary s = summaryIn(finished);
        QVERIFY(s.outcome == RunOutcome::stopped);
        QVERIFY(s.steps >= 3 && s.steps < 5000);
        // Stop took effect within a step of the last one reported.
        QVERIFY(s.steps <= lastStepIn(steps) + 1);
        const QString run = training->runDir();
        QCOMPARE(RunDirectory(run.toStdString()).checkpoint_steps().back(), s.steps);

        m_app->window->showPage(QStringLiteral("Runs"));
        QTRY_VERIFY_WITH_TIMEOUT(!runsPage()->scanning(), 30000);
        QTreeWidgetItem* item = runsPage()->itemFor(run);
        QVERIFY(item);
        QCOMPARE(item->text(7), QStringLiteral("stopped"));

        // Resume it from the Runs page; it trains on from its checkpoint.
        QSignalSpy starting(training, &TrainingController::runStarting);
        QSignalSpy moreSteps(training, &TrainingController::stepsReceived);
        runsPage()->table()->setCurrentItem(item);
        auto* resume = m_app->window->findChild<QPushButton*>(QStringLiteral("resumeRunButton"));
        QVERIFY(resume->isEnabled());
        QTest::mouseClick(resume, Qt::LeftButton);
        QCOMPARE(starting.count(), 1);
        QCOMPARE(starting.at(0).at(1).toBool(), true);
        QCOMPARE(m_app->window->currentPage(), QStringLiteral("Train"));
        QTRY_VERIFY_WITH_TIMEOUT(!moreSteps.isEmpty(), kRunTimeoutMs);
        QCOMPARE(moreSteps.first().at(0).value<QVector<StepMetrics>>().front().step, s.steps + 1);
        // The charts show the history before the resume, then continue.
        QVERIFY(trainPage()->lossChart()->pointCount(0) > size_t(s.steps));
        QTest::mouseClick(trainPage()->stopButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 2, kRunTimeoutMs);
        QVERIFY(summaryIn(finished).outcome == RunOutcome::stopped);
    }

    void twoRunsOverlayOnOneChart()
    {
        // A Muon run beside the AdamW one.
        test::makeQuick(*m_app->context->config(), 6);
        RunConfig c = m_app->context->config()->config();
        c.train.optimizer.type = OptimizerType::muon;
        m_app->context->config()->setConfig(c);
        m_app->window->showPage(QStringLiteral("Train"));
        QSignalSpy finished(m_app->context->training(), &TrainingController::finished);
        QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        const QString muonRun = m_app->context->training()->runDir();
        QVERIFY(muonRun.contains(QStringLiteral("muon")));

        m_app->window->showPage(QStringLiteral("Runs"));
        runsPage()->refresh();
        QTRY_VERIFY_WITH_TIMEOUT(!runsPage()->scanning(), 30000);
        QTreeWidgetItem* a = runsPage()->itemFor(m_adamwRun);
        QTreeWidgetItem* b = runsPage()->itemFor(muonRun);
        QVERIFY(a && b);
        QCOMPARE(b->text(2), QStringLiteral("Muon"));
        for (QTreeWidgetItem* item : {a, b}) {
            // Tick the box the way a person does: click it.
            QTreeWidget* table = runsPage()->table();
            const QRect rect = table->visualItemRect(item);
            QTest::mouseClick(table->viewport(), Qt::LeftButton, {}, QPoint(rect.left() + 12, rect.center().y()));
            if (item->checkState(0) != Qt::Checked) item->setCheckState(0, Qt::Checked);
        }
        LiveChart* chart = runsPage()->compareChart();
        QCOMPARE(chart->seriesCount(), 2);
        QCOMPARE(chart->pointCount(0), size_t(6));
        QCOMPARE(chart->pointCount(1), size_t(6));
        QVERIFY(test::chooseInCombo(runsPage()->metricCombo(), QStringLiteral("val_loss")));
        QCOMPARE(chart->seriesCount(), 2);
        QCOMPARE(chart->pointCount(0), size_t(2));
        QCOMPARE(chart->title(), QStringLiteral("Validation loss"));
    }

    // A run whose trainer was killed (here crucible-cli, SIGKILL after its
    // first checkpoint: no end record, the lock gone with the process) is
    // listed as training while it lives, then as interrupted, and resumes.
    void killedRunIsListedAsInterruptedAndResumes()
    {
        const QString root = m_app->env.runsDir() + QStringLiteral("/killed");
        const std::string log = m_app->env.path(QStringLiteral("killed.log")).toStdString();
        test::CliProcess cli({"train", "--preset", "nano", "--steps", "100000", "--batch", "2", "--seq", "32",
                              "--checkpoint-every", "2", "--eval-every", "0", "--sample-tokens", "0", "--quiet",
                              "--out", root.toStdString()},
                             log);
        QTRY_VERIFY_WITH_TIMEOUT(!RunDirectory(root.toStdString()).checkpoint_steps().empty(), kRunTimeoutMs);

        m_app->window->showPage(QStringLiteral("Runs"));
        auto* resume = m_app->window->findChild<QPushButton*>(QStringLiteral("resumeRunButton"));
        const auto listed = [&]() -> QTreeWidgetItem* {
            runsPage()->refresh();
            if (!QTest::qWaitFor([&] { return !runsPage()->scanning(); }, 30000)) return nullptr;
            QTreeWidgetItem* item = runsPage()->itemFor(root);
            if (item) runsPage()->table()->setCurrentItem(item);
            return item;
        };
        QTreeWidgetItem* item = listed();
        QVERIFY(item);
        QCOMPARE(item->text(7), QStringLiteral("training"));
        QVERIFY(!resume->isEnabled());

        cli.signal(SIGKILL);
        QCOMPARE(cli.wait(), 128 + SIGKILL);
        const int64_t lastCheckpoint = RunDirectory(root.toStdString()).checkpoint_steps().back();
        item = listed();
        QVERIFY(item);
        QCOMPARE(item->text(7), QStringLiteral("interrupted"));
        QVERIFY(resume->isEnabled());

        TrainingController* training = m_app->context->training();
        QSignalSpy starting(training, &TrainingController::runStarting);
        QSignalSpy steps(training, &TrainingController::stepsReceived);
        QSignalSpy finished(training, &TrainingController::finished);
        QTest::mouseClick(resume, Qt::LeftButton);
        QCOMPARE(starting.count(), 1);
        QCOMPARE(starting.at(0).at(1).toBool(), true);
        QTRY_VERIFY_WITH_TIMEOUT(!steps.isEmpty(), kRunTimeoutMs);
        const int64_t resumedAt = steps.first().at(0).value<QVector<StepMetrics>>().front().step;
        QCOMPARE(resumedAt, lastCheckpoint + 1);
        QTest::mouseClick(trainPage()->stopButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        QVERIFY(summaryIn(finished).outcome == RunOutcome::stopped);
    }

    void closingDuringARunAsksThenStopsCleanly()
    {
        test::makeQuick(*m_app->context->config(), 5000);
        m_app->window->showPage(QStringLiteral("Train"));
        TrainingController* training = m_app->context->training();
        QSignalSpy steps(training, &TrainingController::stepsReceived);
        QSignalSpy finished(training, &TrainingController::finished);
        QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(!steps.isEmpty(), kRunTimeoutMs);

        // First answer Cancel: the window stays and the run goes on.
        QTimer::singleShot(0, this, [] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (box) box->button(QMessageBox::Cancel)->click();
        });
        m_app->window->close();
        QVERIFY(m_app->window->isVisible());
        QVERIFY(training->isActive());

        // Then agree: the run stops with a checkpoint and the window closes.
        QTimer::singleShot(0, this, [] {
            auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget());
            if (box) box->button(QMessageBox::Yes)->click();
        });
        m_app->window->close();
        QVERIFY(m_app->window->isVisible());   // not before the run has stopped
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, kRunTimeoutMs);
        QVERIFY(summaryIn(finished).outcome == RunOutcome::stopped);
        QTRY_VERIFY(!m_app->window->isVisible());
        QVERIFY(RunDirectory(training->runDir().toStdString()).latest_checkpoint().has_value());
    }
};

QTEST_MAIN(TestTraining)
#include "tst_training.moc"
