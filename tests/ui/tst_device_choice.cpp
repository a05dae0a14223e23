// The device a new run trains on: the best one there is (a working GPU before
// the CPU) until the user picks one on the Train page, which is remembered
// for the next start; a remembered GPU that is gone falls back to the CPU.
#include "ui/models/device_inventory.h"
#include "ui/pages/train_page.h"
#include "tests/ui/ui_test_support.h"

#include <QCheckBox>
#include <QComboBox>
#include <QSettings>
#include <QSpinBox>
#include <QTest>

using namespace crucible;
using namespace crucible::ui;

class TestDeviceChoice : public QObject {
    Q_OBJECT

private slots:
    void bestDeviceUnlessChosen()
    {
        QCOMPARE(DeviceInventory::preferredDevice(true, QString()), QStringLiteral("cuda"));
        QCOMPARE(DeviceInventory::preferredDevice(true, QStringLiteral("cuda")), QStringLiteral("cuda"));
        QCOMPARE(DeviceInventory::preferredDevice(true, QStringLiteral("cpu")), QStringLiteral("cpu"));
        QCOMPARE(DeviceInventory::preferredDevice(false, QString()), QStringLiteral("cpu"));
        QCOMPARE(DeviceInventory::preferredDevice(false, QStringLiteral("cuda")), QStringLiteral("cpu"));
    }

    void trainPageStartsOnTheBestDeviceAndRemembersAChoice()
    {
        test::AppUnderTest app;
        QVERIFY(app.exposed());
        DeviceInventory* devices = app.context->devices();
        QTRY_VERIFY_WITH_TIMEOUT(devices->cudaProbed(), 30'000);
        const std::string best = devices->cudaAvailable() ? "cuda" : "cpu";
        QTRY_COMPARE(app.context->config()->config().train.device, best);
        QVERIFY(!QSettings().contains(QStringLiteral("train/device")));   // nothing chosen yet

        // The user picks the CPU with the keyboard: remembered.
        app.window->showPage(QStringLiteral("Train"));
        auto* combo = app.window->page<TrainPage>()->findChild<QComboBox*>(QStringLiteral("deviceCombo"));
        QVERIFY(combo);
        if (combo->currentData().toString() == QLatin1String("cpu")) {
            // Already the CPU (no GPU here): a choice is still a choice.
            combo->setFocus();
            QTest::keyClick(combo, Qt::Key_Down);   // the GPU entry is disabled: stays on the CPU
            QTest::keyClick(combo, Qt::Key_Up);
            if (!QSettings().contains(QStringLiteral("train/device"))) emit combo->activated(combo->currentIndex());
        } else {
            QVERIFY(test::chooseInCombo(combo, QStringLiteral("cpu")));
        }
        QCOMPARE(QSettings().value(QStringLiteral("train/device")).toString(), QStringLiteral("cpu"));
        QCOMPARE(app.context->config()->config().train.device, std::string("cpu"));
    }

    // Data parallel on the CPU: replicas are set with the spin box, and the
    // overlap switch (which only several replicas use) follows and is kept
    // in the run's configuration.
    void replicasAndOverlapFromTheTrainPage()
    {
        test::AppUnderTest app;
        QVERIFY(app.exposed());
        app.window->showPage(QStringLiteral("Train"));
        auto* page = app.window->page<TrainPage>();
        auto* combo = page->findChild<QComboBox*>(QStringLiteral("deviceCombo"));
        auto* replicas = page->findChild<QSpinBox*>(QStringLiteral("cpuReplicasSpin"));
        auto* overlap = page->findChild<QCheckBox*>(QStringLiteral("overlapCommCheck"));
        QVERIFY(combo && replicas && overlap);
        if (combo->currentData().toString() != QLatin1String("cpu")) QVERIFY(test::chooseInCombo(combo, QStringLiteral("cpu")));
        test::typeInto(replicas, QStringLiteral("1"));
        QVERIFY(!overlap->isEnabled());
        QVERIFY(overlap->isChecked());   // on by default
        test::typeInto(replicas, QStringLiteral("2"));
        QCOMPARE(app.context->config()->config().train.cpu_replicas, 2);
        QVERIFY(overlap->isEnabled());
        QTest::mouseClick(overlap, Qt::LeftButton, {}, QPoint(8, overlap->height() / 2));
        QVERIFY(!overlap->isChecked());
        QCOMPARE(app.context->config()->config().train.overlap_comm, false);
        // A configuration loaded from a run shows its own choice.
        RunConfig c = app.context->config()->config();
        c.train.overlap_comm = true;
        app.context->config()->setConfig(c);
        QVERIFY(overlap->isChecked());
    }
};

QTEST_MAIN(TestDeviceChoice)
#include "tst_device_choice.moc"
