// Bad input never starts a run: an impossible architecture (heads not
// divisible by KV heads), a zero batch, a missing data file or an unavailable
// device disable Start with the engine's reason; a configuration file with an
// unknown key is refused with its name; an engine failure during a run
// reaches the user as the engine's message.
#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/device_inventory.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/train_page.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/training_controller.h"
#include "tests/ui/ui_test_support.h"

#include <QFile>
#include <QLabel>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTableWidget>
#include <QTest>

using namespace crucible;
using namespace crucible::ui;

class TestValidation : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;

    TrainPage* trainPage() { return m_app->window->page<TrainPage>(); }
    QLabel* blocked() { return m_app->window->findChild<QLabel*>(QStringLiteral("blockedReasons")); }
    template <class T>
    T* find(const char* name) { return m_app->find<T>(name); }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
    }

    void init() { m_app->context->config()->setConfig(RunConfig{preset("nano"), TrainConfig{}, DataConfig{}}); }

    void headsNotDivisibleByKvHeadsIsRefused()
    {
        m_app->window->showPage(QStringLiteral("Model"));
        QVERIFY(trainPage()->startButton()->isEnabled());
        test::typeInto(find<QSpinBox>("kvHeadsSpin"), QStringLiteral("3"));
        QCOMPARE(m_app->context->config()->config().model.n_kv_heads, 3);
        auto* problems = find<MessageBanner>("modelProblems");
        QVERIFY(problems->isVisible());
        QVERIFY2(problems->text().contains(QStringLiteral("divisible by n_kv_heads")), qPrintable(problems->text()));
        QVERIFY(!trainPage()->startButton()->isEnabled());
        QVERIFY(trainPage()->startButton()->toolTip().contains(QStringLiteral("divisible")));
        m_app->window->showPage(QStringLiteral("Train"));
        QVERIFY(blocked()->isVisible());
        QVERIFY(blocked()->text().contains(QStringLiteral("divisible")));
        // The parameter count is not computed for a model that cannot exist,
        // and no preset row claims to be it.
        QCOMPARE(find<QLabel>("totalParams")->text(), QStringLiteral("–"));
        auto* presets = find<QTableWidget>("presetTable");
        for (int r = 0; r < presets->rowCount(); ++r)
            QVERIFY2(!presets->item(r, 0)->font().bold(), qPrintable(presets->item(r, 0)->text()));

        m_app->window->showPage(QStringLiteral("Model"));
        test::typeInto(find<QSpinBox>("kvHeadsSpin"), QStringLiteral("2"));
        QVERIFY(!problems->isVisible());
        QVERIFY(trainPage()->startButton()->isEnabled());
        QVERIFY(!blocked()->isVisible());
        // Back to nano: its row is the highlighted one.
        QVERIFY(presets->item(0, 0)->font().bold());
        QCOMPARE(presets->item(0, 0)->text(), QStringLiteral("nano"));
    }

    void zeroBatchIsRefused()
    {
        m_app->window->showPage(QStringLiteral("Train"));
        test::typeInto(find<QSpinBox>("batchSpin"), QStringLiteral("0"));
        QCOMPARE(m_app->context->config()->config().train.batch_size, 0);
        QVERIFY(!trainPage()->startButton()->isEnabled());
        QVERIFY2(blocked()->text().contains(QStringLiteral("batch size must be between 1")), qPrintable(blocked()->text()));
        // Clicking the disabled button does nothing.
        QSignalSpy starting(m_app->context->training(), &TrainingController::runStarting);
        QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
        trainPage()->start();
        QCOMPARE(starting.count(), 0);
        test::typeInto(find<QSpinBox>("batchSpin"), QStringLiteral("4"));
        QVERIFY(trainPage()->startButton()->isEnabled());
    }

    void sequenceLongerThanTheContextIsRefused()
    {
        m_app->window->showPage(QStringLiteral("Train"));
        test::typeInto(find<QSpinBox>("trainSeqSpin"), QStringLiteral("4096"));
        QVERIFY(!trainPage()->startButton()->isEnabled());
        QVERIFY(blocked()->text().contains(QStringLiteral("sequence length must be at most")));
    }

    void missingDataAndUnavailableDeviceAreRefused()
    {
        RunConfig c = m_app->context->config()->config();
        c.data.paths = {m_app->env.path(QStringLiteral("no-such-file.txt")).toStdString()};
        m_app->context->config()->setConfig(c);
        QVERIFY(!trainPage()->startButton()->isEnabled());
        QVERIFY(blocked()->text().contains(QStringLiteral("does not exist")));

        if (m_app->context->devices()->cudaAvailable()) QSKIP("this machine has CUDA; the unavailable-device case needs none");
        c.data.paths.clear();
        c.train.device = "cuda";
        m_app->context->config()->setConfig(c);
        QVERIFY(!trainPage()->startButton()->isEnabled());
        QVERIFY(blocked()->text().contains(QStringLiteral("CUDA is not available")));
    }

    void configurationWithAnUnknownKeyIsRefused()
    {
        const QByteArray before = m_app->context->config()->toJson();
        QString error;
        QVERIFY(!m_app->context->config()->loadJson(R"({"model": {"d_modle": 64}})", &error));
        QVERIFY2(error.contains(QStringLiteral("d_modle")), qPrintable(error));
        QVERIFY(!m_app->context->config()->loadJson("{ not json", &error));
        QVERIFY(error.contains(QStringLiteral("not valid JSON")));
        QCOMPARE(m_app->context->config()->toJson(), before);
    }

    void engineFailureReachesTheUser()
    {
        // A "text" file full of NUL bytes: the corpus refuses it by name.
        const QString bad = m_app->env.path(QStringLiteral("binary.txt"));
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray(4096, '\0'));
        f.close();
        test::makeQuick(*m_app->context->config(), 3);
        RunConfig c = m_app->context->config()->config();
        c.data.paths = {bad.toStdString()};
        m_app->context->config()->setConfig(c);
        m_app->window->showPage(QStringLiteral("Train"));
        QVERIFY(trainPage()->startButton()->isEnabled());
        QSignalSpy finished(m_app->context->training(), &TrainingController::finished);
        QTest::mouseClick(trainPage()->startButton(), Qt::LeftButton);
        QTRY_COMPARE_WITH_TIMEOUT(finished.count(), 1, 60'000);
        QVERIFY(finished.last().at(0).value<RunSummary>().outcome == RunOutcome::failed);
        auto* banner = find<MessageBanner>("trainBanner");
        QCOMPARE(banner->kind(), MessageBanner::Kind::Error);
        QVERIFY2(banner->text().contains(QStringLiteral("binary.txt")), qPrintable(banner->text()));
        QVERIFY(trainPage()->startButton()->isEnabled());
    }
};

QTEST_MAIN(TestValidation)
#include "tst_validation.moc"
