// The device a new run trains on: the best one there is (a working GPU before
// the CPU) until the user picks one on the Train page, which is remembered
// for the next start; a remembered GPU that is gone falls back to the CPU.
#include "ui/models/device_inventory.h"
#include "ui/pages/train_page.h"
#include "tests/ui/ui_test_support.h"

#include <QComboBox>
#include <QSettings>
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
};

QTEST_MAIN(TestDeviceChoice)
#include "tst_device_choice.moc"
