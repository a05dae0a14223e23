// The Train page says what the run is doing: during the final evaluation
// (seconds on a CPU, after the last step) it reads "Evaluating…", and the
// refresh of the numbers after that step does not overwrite it.
#include "ui/pages/train_page.h"
#include "ui/widgets/value_label.h"
#include "ui/workers/training_controller.h"
#include "tests/ui/ui_test_support.h"

#include <QElapsedTimer>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QTest>

using namespace crucible;
using namespace crucible::ui;

class TestTrainStatus : public QObject {
    Q_OBJECT

private slots:
    void finalEvaluationIsShown()
    {
        test::AppUnderTest app;
        QVERIFY(app.exposed());
        test::makeQuick(*app.context->config(), 3);
        RunConfig c = app.context->config()->config();
        c.train.eval_every = 0;     // only at the end...
        c.train.eval_batches = 0;   // ...over the whole validation split: a few seconds
        c.train.sample_tokens = 0;
        app.context->config()->setConfig(c);
        app.window->showPage(QStringLiteral("Train"));
        auto* page = app.window->page<TrainPage>();
        auto* status = app.window->findChild<ValueLabel*>(QStringLiteral("trainStatus"));
        QVERIFY(status);
        QSignalSpy finished(app.context->training(), &TrainingController::finished);
        QSignalSpy evals(app.context->training(), &TrainingController::evalReceived);
        QTest::mouseClick(page->startButton(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(status->text().startsWith(QStringLiteral("Evaluating")) || !finished.isEmpty(), 120'000);
        QVERIFY2(finished.isEmpty(), "the evaluation was over before it could be seen");
        // While it lasts (past the numbers' refresh), it says so.
        QElapsedTimer held;
        held.start();
        while (evals.isEmpty() && held.elapsed() < 1000) {
            QTest::qWait(20);
            if (evals.isEmpty()) QVERIFY2(status->text().startsWith(QStringLiteral("Evaluating")), qPrintable(status->text()));
        }
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 120'000);
    }
};

QTEST_MAIN(TestTrainStatus)
#include "tst_train_status.moc"
