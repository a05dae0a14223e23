// The window opens on the nano preset with the embedded corpus, lists every
// page with its icon, switches pages from the list, and remembers its page.
#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/model_page.h"
#include "ui/pages/system_page.h"
#include "ui/pages/train_page.h"
#include "tests/ui/ui_test_support.h"

#include <QComboBox>
#include <QLabel>
#include <QListWidget>
#include <QPushButton>
#include <QScrollArea>
#include <QStackedWidget>
#include <QTest>

using namespace crucible;
using namespace crucible::ui;

class TestMainWindow : public QObject {
    Q_OBJECT
    std::unique_ptr<test::IsolatedEnvironment> m_env;

private slots:
    void initTestCase() { m_env = std::make_unique<test::IsolatedEnvironment>(); }

    void opensOnNanoWithTheEmbeddedCorpus()
    {
        AppContext context;
        context.setRunsDir(m_env->runsDir());
        MainWindow window(context);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QCOMPARE(window.windowTitle(), QStringLiteral("Crucible"));
        QCOMPARE(context.config()->config().model.name, std::string("nano"));
        QVERIFY(context.config()->config().data.paths.empty());
        auto* preset = window.findChild<QComboBox*>(QStringLiteral("presetCombo"));
        QVERIFY(preset);
        QCOMPARE(preset->currentData().toString(), QStringLiteral("nano"));
        // A fresh configuration can start at once.
        QVERIFY(window.page<TrainPage>()->blockingReasons().isEmpty());
        QVERIFY(window.page<TrainPage>()->startButton()->isEnabled());
        QCOMPARE(window.currentPage(), QStringLiteral("Model"));
    }

    void everyPageIsListedAndReachable()
    {
        AppContext context;
        context.setRunsDir(m_env->runsDir());
        MainWindow window(context);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QListWidget* list = window.pageList();
        QStringList names;
        for (int i = 0; i < list->count(); ++i) {
            names << list->item(i)->text();
            QVERIFY(!list->item(i)->icon().isNull());
        }
        // The list is the page table, in order; other pages (Chat, ...) may join it.
        QStringList specs;
        for (const PageSpec& spec : pageSpecs()) specs << spec.name;
        QCOMPARE(names, specs);
        int at = -1;
        for (const char* name : {"Model", "Data", "Train", "Runs", "System"}) {
            const int i = int(names.indexOf(QString::fromLatin1(name)));
            QVERIFY2(i > at, name);
            at = i;
        }
        auto* stack = window.findChild<QStackedWidget*>();
        for (int i = list->count() - 1; i >= 0; --i) {
            const QRect rect = list->visualItemRect(list->item(i));
            QTest::mouseClick(list->viewport(), Qt::LeftButton, {}, rect.center());
            QCOMPARE(window.currentPage(), names[i]);
            // Each page sits in its own scroll area (a short screen scrolls it).
            auto* scroll = qobject_cast<QScrollArea*>(stack->currentWidget());
            QVERIFY(scroll);
            QCOMPARE(scroll->widget(), window.page(names[i]));
            QVERIFY(window.page(names[i])->isVisible());
        }
        // The System page names the CPU and says why there is or is no GPU.
        window.showPage(QStringLiteral("System"));
        QVERIFY(window.page<SystemPage>()->findChildren<QLabel*>().size() > 5);
    }

    void remembersThePageAndPreset()
    {
        {
            AppContext context;
            MainWindow window(context);
            window.show();
            window.showPage(QStringLiteral("Runs"));
            QVERIFY(test::chooseInCombo(window.findChild<QComboBox*>(QStringLiteral("presetCombo")), QStringLiteral("micro")));
            QCOMPARE(context.config()->config().model.name, std::string("micro"));
            window.close();
        }
        AppContext context;
        MainWindow window(context);
        QCOMPARE(window.currentPage(), QStringLiteral("Runs"));
        QCOMPARE(context.config()->config().model.name, std::string("micro"));
        // Back to nano for the suites that follow in this process.
        QVERIFY(test::chooseInCombo(window.findChild<QComboBox*>(QStringLiteral("presetCombo")), QStringLiteral("nano")));
    }
};

QTEST_MAIN(TestMainWindow)
#include "tst_main_window.moc"
