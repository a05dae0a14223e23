// The Data page: the tokenizer trains on a worker thread with a busy
// indicator and can be cancelled; the corpus statistics appear; the preview
// colours every token with alternating bands and a tooltip naming its id and
// piece; files are added by drag and drop and removed again.
#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/data_page.h"
#include "tests/ui/ui_test_support.h"

#include <QDropEvent>
#include <QLabel>
#include <QListWidget>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSignalSpy>
#include <QTest>
#include <QTextBlock>
#include <QTextEdit>
#include <QUrl>

#include <fstream>

using namespace crucible;
using namespace crucible::ui;

class TestDataPage : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;

    DataPage* page() { return m_app->window->page<DataPage>(); }
    template <class T>
    T* find(const char* name) { return m_app->find<T>(name); }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
    }

    void tokenizerTrainsOffTheGuiThreadAndMeasuresTheCorpus()
    {
        QSignalSpy done(page(), &DataPage::analysisFinished);
        // Showing the page starts the first analysis by itself.
        m_app->window->showPage(QStringLiteral("Data"));
        QVERIFY(page()->isAnalyzing());
        QVERIFY(find<QProgressBar>("analyzeBusy")->isVisible());
        QVERIFY(find<QPushButton>("cancelAnalyzeButton")->isVisible());
        QVERIFY(!find<QPushButton>("analyzeButton")->isEnabled());
        // The GUI thread is free meanwhile: it keeps processing events.
        QTest::qWait(50);
        QTRY_COMPARE_WITH_TIMEOUT(done.count(), 1, 120'000);
        QCOMPARE(done.at(0).at(0).toBool(), true);
        QVERIFY(!find<QProgressBar>("analyzeBusy")->isVisible());
        QCOMPARE(find<QLabel>("statDocuments")->text(), QStringLiteral("1"));
        QCOMPARE(find<QLabel>("statBytes")->text(), QStringLiteral("1.1 MB"));
        QCOMPARE(find<QLabel>("statVocab")->text(), QLocale().toString(2048));
        QVERIFY(find<QLabel>("statSplit")->text().contains(QLatin1Char('/')));
        const double bpt = find<QLabel>("statBytesPerToken")->text().toDouble();
        QVERIFY(bpt > 1.5 && bpt < 6.0);
        QVERIFY(page()->tokenizer() != nullptr);
    }

    void previewColoursEveryToken()
    {
        auto* input = find<QPlainTextEdit>("previewInput");
        input->setFocus();
        input->selectAll();
        QTest::keyClicks(input, QStringLiteral("To be, or not to be"));
        auto* output = find<QTextEdit>("previewOutput");
        QTRY_VERIFY(output->toPlainText() == QStringLiteral("To be, or not to be"));
        const auto ids = page()->tokenizer()->encode("To be, or not to be");
        QVERIFY(find<QLabel>("previewCaption")->text().startsWith(QStringLiteral("%1 tokens").arg(ids.size())));

        // Walk the fragments: one per token, bands alternate, tooltips name the id.
        QList<QTextFragment> fragments;
        for (QTextBlock b = output->document()->begin(); b.isValid(); b = b.next())
            for (auto it = b.begin(); !it.atEnd(); ++it) fragments << it.fragment();
        QCOMPARE(size_t(fragments.size()), ids.size());
        for (int i = 0; i < fragments.size(); ++i) {
            const QTextCharFormat f = fragments[i].charFormat();
            QVERIFY(f.toolTip().contains(QStringLiteral("id %1").arg(ids[size_t(i)])));
            QVERIFY(f.toolTip().contains(QStringLiteral("piece")));
            if (i > 0) QVERIFY(f.background() != fragments[i - 1].charFormat().background());
        }

        // Characters the vocabulary lacks fall back to byte pieces, shown as such.
        // (pasted: QTest types ASCII only)
        input->selectAll();
        input->insertPlainText(QStringLiteral("火"));
        QTRY_VERIFY(output->toPlainText().contains(QStringLiteral("<0xE7>")));
        QVERIFY(find<QLabel>("previewCaption")->text().contains(QStringLiteral("byte pieces")));
    }

    void analysisCanBeCancelled()
    {
        QSignalSpy done(page(), &DataPage::analysisFinished);
        // A vocabulary not cached yet, so the worker has real work to do.
        ModelConfig m = m_app->context->config()->config().model;
        m.vocab_size = 1536;
        m_app->context->config()->setModel(m);
        QTest::mouseClick(find<QPushButton>("analyzeButton"), Qt::LeftButton);
        QVERIFY(page()->isAnalyzing());
        QTest::mouseClick(find<QPushButton>("cancelAnalyzeButton"), Qt::LeftButton);
        QVERIFY(!page()->isAnalyzing());
        QVERIFY(!find<QProgressBar>("analyzeBusy")->isVisible());
        QCOMPARE(find<QLabel>("analyzeStage")->text(), QStringLiteral("Cancelled."));
        QVERIFY(find<QPushButton>("analyzeButton")->isEnabled());
        // The abandoned answer never lands.
        QTest::qWait(500);
        QCOMPARE(done.count(), 0);
        QVERIFY(find<QLabel>("statsNote")->text().contains(QStringLiteral("changed")));
    }

    void filesAreDroppedAndRemoved()
    {
        const QString file = m_app->env.path(QStringLiteral("my notes.txt"));
        std::ofstream(file.toStdString()) << "My own text, to train on.\n";
        QMimeData mime;
        mime.setUrls({QUrl::fromLocalFile(file)});
        const QPoint at = page()->rect().center();
        QDragEnterEvent enter(at, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(page(), &enter);
        QVERIFY(enter.isAccepted());
        QDropEvent drop(at, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(page(), &drop);
        QCOMPARE(m_app->context->config()->config().data.paths, std::vector<std::string>{file.toStdString()});
        auto* list = find<QListWidget>("pathList");
        QVERIFY(list->isVisible());
        QCOMPARE(list->count(), 1);
        QVERIFY(!find<QLabel>("corpusEmptyState")->isVisible());

        list->setCurrentRow(0);
        list->item(0)->setSelected(true);
        QTest::mouseClick(find<QPushButton>("removePathButton"), Qt::LeftButton);
        QVERIFY(m_app->context->config()->config().data.paths.empty());
        QVERIFY(find<QLabel>("corpusEmptyState")->isVisible());
    }
};

QTEST_MAIN(TestDataPage)
#include "tst_data_page.moc"
