// The Runs page on runs written to a temporary folder: runs from an added
// folder are listed; renaming happens in place (F2, type, Enter) and refuses
// a taken name; deleting asks first and refuses a folder holding the user's
// own files; overlaid runs export as CSV.
#include "core/train/run_dir.h"
#include "ui/app_context.h"
#include "ui/charts/live_chart.h"
#include "ui/main_window.h"
#include "ui/pages/runs_page.h"
#include "ui/widgets/message_banner.h"
#include "tests/ui/ui_test_support.h"

#include <QFile>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QTest>
#include <QTimer>
#include <QTreeWidget>

#include <fstream>

using namespace crucible;
using namespace crucible::ui;
namespace fs = std::filesystem;
using test::makeRun;

namespace {

void answerNextMessageBox(QObject* context, QMessageBox::StandardButton button)
{
    QTimer::singleShot(0, context, [button] {
        if (auto* box = qobject_cast<QMessageBox*>(QApplication::activeModalWidget())) box->button(button)->click();
    });
}

} // namespace

class TestRunsPage : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;

    RunsPage* page() { return m_app->window->page<RunsPage>(); }
    MessageBanner* banner() { return m_app->window->findChild<MessageBanner*>(QStringLiteral("runsBanner")); }
    QPushButton* button(const char* name) { return m_app->window->findChild<QPushButton*>(QString::fromLatin1(name)); }
    // Runs are scanned on a worker thread: refresh, then wait for the table.
    void refreshAndWait()
    {
        page()->refresh();
        QTRY_VERIFY_WITH_TIMEOUT(!page()->scanning(), 30000);
    }
    void select(const QString& root)
    {
        QTreeWidgetItem* item = page()->itemFor(root);
        QVERIFY(item);
        page()->table()->setCurrentItem(item);
    }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
        m_app->window->showPage(QStringLiteral("Runs"));
    }

    void listsRunsFromTheRunsFolderAndAddedFolders()
    {
        makeRun(m_app->env.runsDir(), QStringLiteral("alpha"), 5);
        const QString elsewhere = m_app->env.path(QStringLiteral("elsewhere"));
        const QString beta = makeRun(elsewhere, QStringLiteral("beta"), 7);
        refreshAndWait();
        QCOMPARE(page()->table()->topLevelItemCount(), 1);
        page()->addFolder(elsewhere);
        QTRY_VERIFY_WITH_TIMEOUT(!page()->scanning(), 30000);
        QCOMPARE(page()->table()->topLevelItemCount(), 2);
        QTreeWidgetItem* item = page()->itemFor(beta);
        QVERIFY(item);
        QCOMPARE(item->text(3), QStringLiteral("7 / 7"));
        QCOMPARE(item->text(7), QStringLiteral("finished"));
        QVERIFY(page()->folders().contains(elsewhere));
    }

    void renamesInPlace()
    {
        const QString root = makeRun(m_app->env.runsDir(), QStringLiteral("to-rename"), 3);
        refreshAndWait();
        select(root);
        QTest::mouseClick(button("renameRunButton"), Qt::LeftButton);
        auto* editor = qobject_cast<QLineEdit*>(QApplication::focusWidget());
        QVERIFY(editor);
        editor->selectAll();
        QTest::keyClicks(editor, QStringLiteral("muon-vs-adamw"));
        QTest::keyClick(editor, Qt::Key_Return);
        const QString renamed = QDir(m_app->env.runsDir()).filePath(QStringLiteral("muon-vs-adamw"));
        QTRY_VERIFY(page()->itemFor(renamed) != nullptr);
        QVERIFY(!QFileInfo::exists(root));
        QVERIFY(QFileInfo::exists(renamed + QStringLiteral("/config.json")));
    }

    void renameRefusesATakenName()
    {
        const QString a = makeRun(m_app->env.runsDir(), QStringLiteral("taken-a"), 3);
        makeRun(m_app->env.runsDir(), QStringLiteral("taken-b"), 3);
        refreshAndWait();
        QTreeWidgetItem* item = page()->itemFor(a);
        QVERIFY(item);
        item->setText(0, QStringLiteral("taken-b"));   // what the editor commits
        QVERIFY(banner()->isVisible());
        QCOMPARE(banner()->kind(), MessageBanner::Kind::Error);
        QVERIFY2(banner()->text().contains(QStringLiteral("already exists")), qPrintable(banner()->text()));
        QVERIFY(QFileInfo::exists(a));
        QCOMPARE(item->text(0), QStringLiteral("taken-a"));
    }

    void deleteAsksFirst()
    {
        const QString root = makeRun(m_app->env.runsDir(), QStringLiteral("to-delete"), 3);
        refreshAndWait();
        select(root);
        answerNextMessageBox(this, QMessageBox::Cancel);
        QTest::mouseClick(button("deleteRunButton"), Qt::LeftButton);
        QVERIFY(QFileInfo::exists(root));
        select(root);
        answerNextMessageBox(this, QMessageBox::Yes);
        QTest::mouseClick(button("deleteRunButton"), Qt::LeftButton);
        QVERIFY(!QFileInfo::exists(root));
        QVERIFY(page()->itemFor(root) == nullptr);
    }

    void deleteRefusesAFolderWithTheUsersFiles()
    {
        const QString root = makeRun(m_app->env.runsDir(), QStringLiteral("with-notes"), 3);
        QFile notes(root + QStringLiteral("/notes.txt"));
        QVERIFY(notes.open(QIODevice::WriteOnly));
        notes.write("mine");
        notes.close();
        refreshAndWait();
        select(root);
        answerNextMessageBox(this, QMessageBox::Yes);
        QTest::mouseClick(button("deleteRunButton"), Qt::LeftButton);
        QVERIFY(QFileInfo::exists(root + QStringLiteral("/notes.txt")));
        QCOMPARE(banner()->kind(), MessageBanner::Kind::Error);
        QVERIFY(banner()->text().contains(QStringLiteral("notes.txt")));
    }

    void overlaidRunsExportAsCsv()
    {
        const QString a = makeRun(m_app->env.runsDir(), QStringLiteral("csv-a"), 4);
        const QString b = makeRun(m_app->env.runsDir(), QStringLiteral("csv-b"), 6);
        refreshAndWait();
        page()->itemFor(a)->setCheckState(0, Qt::Checked);
        page()->itemFor(b)->setCheckState(0, Qt::Checked);
        LiveChart* chart = page()->compareChart();
        QCOMPARE(chart->seriesCount(), 2);
        const QString csv = chart->toCsv();
        QCOMPARE(csv.count(QStringLiteral("\ncsv-a,")), 4);
        QCOMPARE(csv.count(QStringLiteral("\ncsv-b,")), 6);
        QVERIFY(chart->exportPng(m_app->env.path(QStringLiteral("compare.png"))));
        QVERIFY(QFileInfo(m_app->env.path(QStringLiteral("compare.png"))).size() > 1000);
    }
};

QTEST_MAIN(TestRunsPage)
#include "tst_runs_page.moc"
