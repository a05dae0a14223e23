// The app's fine-tune mode end to end, as a person uses it: a tiny model is
// trained on the Train page; on the Model page the mode switches to LoRA, the
// run is picked as the base, bad choices (a rank larger than a projection, a
// folder that is no model) are explained inline and block Start; the
// breakdown shows the trainable share and memory by part; the fine-tune
// trains on the worker thread and writes a PEFT adapter the CLI reads, with
// the measured peak beside the estimate; the Runs page tells full from LoRA
// runs; the Chat page loads base + adapter and switching the adapter off
// changes the model's distribution for the same prompt.
#include "core/io/peft_adapter.h"
#include "core/train/finetune.h"
#include "core/train/run_catalog.h"
#include "core/train/run_dir.h"
#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/chat_page.h"
#include "ui/pages/finetune_panel.h"
#include "ui/pages/model_page.h"
#include "ui/pages/runs_page.h"
#include "ui/pages/train_page.h"
#include "ui/widgets/message_banner.h"
#include "ui/widgets/number_box.h"
#include "ui/workers/chat_worker.h"
#include "ui/workers/training_controller.h"
#include "tests/ui/ui_test_support.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTest>
#include <QTreeWidget>
#include <QScrollArea>

#include <cmath>

using namespace crucible;
using namespace crucible::ui;

namespace {

constexpr int kTimeoutMs = 120'000;
constexpr int kColKind = 9;   // the Runs table's Kind column (shown beside Model)

RunSummary trainAndWait(test::AppUnderTest& app)
{
    TrainingController* training = app.context->training();
    QSignalSpy finished(training, &TrainingController::finished);
    auto* page = app.window->page<TrainPage>();
    app.window->showPage(QStringLiteral("Train"));
    if (!page->startButton()->isEnabled()) {
        qWarning("Start is disabled: %s", qPrintable(page->startButton()->toolTip()));
        return RunSummary{};
    }
    QTest::mouseClick(page->startButton(), Qt::LeftButton);
    if (!QTest::qWaitFor([&] { return finished.count() == 1; }, kTimeoutMs)) return RunSummary{};
    return finished.last().at(0).value<RunSummary>();
}

bool pick(QComboBox* combo, const QString& value)
{
    const int index = combo->findData(value);
    if (index < 0) return false;
    combo->setCurrentIndex(index);
    emit combo->activated(index);
    return true;
}

} // namespace

class TestFinetuneMode : public QObject {
    Q_OBJECT
    std::unique_ptr<test::AppUnderTest> m_app;
    QString m_base, m_finetune;

    template <class T>
    T* find(const char* name) { return m_app->find<T>(name); }

private slots:
    void initTestCase()
    {
        m_app = std::make_unique<test::AppUnderTest>();
        QVERIFY(m_app->exposed());
        test::makeQuick(*m_app->context->config(), 4);
        const RunSummary s = trainAndWait(*m_app);
        QVERIFY2(s.outcome == RunOutcome::finished, s.error.c_str());
        m_base = m_app->context->training()->runDir();
    }

    void cleanupTestCase() { m_app.reset(); }

    void modeChoosesTheBaseAndItsShape()
    {
        m_app->window->showPage(QStringLiteral("Model"));
        auto* mode = find<QComboBox>("modeCombo");
        auto* base = find<QComboBox>("baseCombo");
        QVERIFY(!base->isVisible());
        QVERIFY(test::chooseInCombo(mode, QStringLiteral("finetune")));
        QVERIFY(m_app->context->config()->config().finetune.has_value());
        QVERIFY(base->isVisible());
        // The run list is read on a worker thread; the trained run is a base.
        QTRY_VERIFY_WITH_TIMEOUT(base->findData(m_base) >= 0, 30000);
        QVERIFY(pick(base, m_base));
        const RunConfig& c = m_app->context->config()->config();
        QCOMPARE(QString::fromStdString(c.finetune->base), m_base);
        QCOMPARE(c.model.d_model, preset("nano").d_model);
        QVERIFY(!find<QLabel>("baseNote")->text().isEmpty());
        // The architecture is the base's: its fields are locked.
        QVERIFY(!find<QSpinBox>("dModelSpin")->isEnabled());
        QVERIFY(!find<QComboBox>("presetCombo")->isVisible());
        // The longer form scrolls vertically without needing a horizontal bar.
        auto* scroll = m_app->window->page<ModelPage>()->findChild<QScrollArea*>(QStringLiteral("formScroll"));
        QVERIFY(scroll->widget()->minimumSizeHint().width() <= scroll->viewport()->width());
    }

    void targetsRankAndTheBreakdown()
    {
        QTest::mouseClick(find<QPushButton>("targetsAllLinear"), Qt::LeftButton);
        QCOMPARE(m_app->context->config()->config().finetune->lora.targets.size(), size_t(7));
        QVERIFY(find<QCheckBox>("target_down_proj")->isChecked());
        QTest::mouseClick(find<QPushButton>("targetsAttention"), Qt::LeftButton);
        QCOMPARE(m_app->context->config()->config().finetune->lora.targets.size(), size_t(4));
        QVERIFY(!find<QCheckBox>("target_down_proj")->isChecked());
        QTest::mouseClick(find<QCheckBox>("target_up_proj"), Qt::LeftButton);
        QCOMPARE(m_app->context->config()->config().finetune->lora.targets.size(), size_t(5));

        test::typeInto(find<QSpinBox>("loraRankSpin"), QStringLiteral("4"));
        test::typeInto(find<QDoubleSpinBox>("loraAlphaBox"), QStringLiteral("8"));
        const FinetuneConfig& ft = *m_app->context->config()->config().finetune;
        QCOMPARE(ft.lora.rank, 4);
        QCOMPARE(ft.lora.alpha, 8.0f);
        QVERIFY(find<QLabel>("loraScaleNote")->text().contains(QStringLiteral("2")));
        QTest::mouseClick(find<QCheckBox>("rsloraCheck"), Qt::LeftButton);
        QVERIFY(m_app->context->config()->config().finetune->lora.use_rslora);
        QTest::mouseClick(find<QCheckBox>("rsloraCheck"), Qt::LeftButton);

        // Trainable parameters, as the engine counts them, and their share.
        const RunConfig& c = m_app->context->config()->config();
        const QString total = find<QLabel>("totalParams")->text();
        QVERIFY2(total.contains(QStringLiteral("trainable")) && total.contains(QLatin1Char('%')), qPrintable(total));

        // QLoRA and checkpointing are stored in the configuration.
        QTest::mouseClick(find<QCheckBox>("qloraCheck"), Qt::LeftButton);
        QTest::mouseClick(find<QCheckBox>("gradCheckpointCheck"), Qt::LeftButton);
        QVERIFY(c.finetune->qlora);
        QVERIFY(c.finetune->grad_checkpoint);
        const RunConfig back = run_config_from_json(to_json(c));
        QVERIFY(back.finetune->qlora && back.finetune->grad_checkpoint);
        QTest::mouseClick(find<QCheckBox>("qloraCheck"), Qt::LeftButton);
        QTest::mouseClick(find<QCheckBox>("gradCheckpointCheck"), Qt::LeftButton);
        QVERIFY(!c.finetune->qlora && !c.finetune->grad_checkpoint);
    }

    void badChoicesAreExplainedInline()
    {
        auto* banner = find<MessageBanner>("modelProblems");
        auto* start = m_app->window->page<TrainPage>()->startButton();
        // A rank larger than the smallest projection.
        test::typeInto(find<QSpinBox>("loraRankSpin"), QStringLiteral("5000"));
        QCOMPARE(banner->kind(), MessageBanner::Kind::Error);
        QVERIFY(!start->isEnabled());
        QVERIFY(start->toolTip().contains(QStringLiteral("rank")));
        test::typeInto(find<QSpinBox>("loraRankSpin"), QStringLiteral("4"));
        QVERIFY(banner->isHidden() || banner->kind() != MessageBanner::Kind::Error);

        // A folder that holds no model.
        auto* panel = m_app->window->page<ModelPage>()->finetunePanel();
        QVERIFY(!panel->chooseBase(m_app->env.path(QStringLiteral("settings"))));
        QVERIFY(!panel->baseProblem().isEmpty());
        QCOMPARE(find<QLabel>("baseNote")->text(), panel->baseProblem());
        QCOMPARE(banner->kind(), MessageBanner::Kind::Error);
        QVERIFY(!start->isEnabled());
        QVERIFY(panel->chooseBase(m_base));
        QVERIFY(panel->baseProblem().isEmpty());
        QVERIFY(start->isEnabled());
    }

    void fineTuneTrainsAndWritesAnAdapter()
    {
        // The Train page speaks of the adapters' rate.
        auto* lr = find<QDoubleSpinBox>("lrBox");
        auto* form = qobject_cast<QFormLayout*>(lr->parentWidget()->layout());
        QVERIFY(form);
        QCOMPARE(qobject_cast<QLabel*>(form->labelForField(lr))->text(), QStringLiteral("Adapter learning rate"));
        test::typeInto(find<QDoubleSpinBox>("adapterLrBox"), QStringLiteral("0.02"));
        QCOMPARE(m_app->context->config()->config().train.optimizer.lr, 0.02f);

        const RunSummary s = trainAndWait(*m_app);
        QVERIFY2(s.outcome == RunOutcome::finished, s.error.c_str());
        m_finetune = m_app->context->training()->runDir();
        QVERIFY(QFileInfo(m_finetune).fileName().contains(QStringLiteral("-lora-")));
        const RunDirectory run(m_finetune.toStdString());
        const RunConfig written = run.read_config();
        QVERIFY(written.finetune.has_value());
        QCOMPARE(written.finetune->lora.rank, 4);
        const auto checkpoint = run.latest_checkpoint();
        QVERIFY(checkpoint.has_value());
        QVERIFY(is_peft_adapter_dir(*checkpoint));
        QCOMPARE(read_peft_config(*checkpoint, written.model).config.rank, 4);

        // The measured peak went beside the estimate.
        auto* measured = find<QLabel>("measuredPeak");
        QVERIFY(!measured->isHidden());
        QVERIFY2(measured->text().contains(QStringLiteral("estimated")), qPrintable(measured->text()));
    }

    void runsPageTellsTheKinds()
    {
        auto* runs = m_app->window->page<RunsPage>();
        m_app->window->showPage(QStringLiteral("Runs"));
        QTRY_VERIFY_WITH_TIMEOUT(runs->itemFor(m_finetune) != nullptr, 30000);
        QTRY_VERIFY_WITH_TIMEOUT(!runs->scanning(), 30000);
        QCOMPARE(runs->itemFor(m_finetune)->text(kColKind), QStringLiteral("LoRA r4"));
        QCOMPARE(runs->itemFor(m_base)->text(kColKind), QStringLiteral("full"));
        QCOMPARE(runs->table()->headerItem()->text(kColKind), QStringLiteral("Kind"));
    }

    void chatSwitchesTheAdapterOff()
    {
        auto* chat = m_app->window->page<ChatPage>();
        m_app->window->showPage(QStringLiteral("Chat"));
        QTRY_VERIFY_WITH_TIMEOUT(chat->runCombo()->findData(m_finetune) >= 0, 30000);
        if (chat->runCombo()->currentData().toString() != m_finetune) QVERIFY(pick(chat->runCombo(), m_finetune));
        QVERIFY(QTest::qWaitFor([&] { return chat->state() == ChatPage::State::Ready; }, kTimeoutMs));
        QCheckBox* adapter = chat->adapterToggle();
        QVERIFY(!adapter->isHidden());
        QVERIFY(adapter->isChecked());

        auto send = [&](const QString& message) {
            QSignalSpy done(chat, &ChatPage::replyCompleted);
            chat->input()->setFocus();
            QTest::keyClicks(chat->input(), message);
            QTest::keyClick(chat->input(), Qt::Key_Return, Qt::ControlModifier);
            return done.wait(kTimeoutMs);
        };
        auto regenerate = [&] {
            QSignalSpy done(chat, &ChatPage::replyCompleted);
            QTest::mouseClick(chat->regenerateButton(), Qt::LeftButton);
            return done.wait(kTimeoutMs);
        };
        auto firstToken = [&] { return chat->conversation().turns.back().tokens.front(); };
        QVERIFY(send(QStringLiteral("ROMEO:")));
        const ChatToken tuned = firstToken();
        QCOMPARE(chat->conversation().turns.back().stats.answeredBy, QStringLiteral("adapter on"));
        QVERIFY(!tuned.alternatives.isEmpty());

        // The same prompt again, from the base alone: another distribution.
        QTest::mouseClick(adapter, Qt::LeftButton);
        QVERIFY(!adapter->isChecked());
        QVERIFY(regenerate());
        const ChatToken base = firstToken();
        QCOMPARE(chat->conversation().turns.back().stats.answeredBy, QStringLiteral("adapter off (base alone)"));
        QVERIFY(!base.alternatives.isEmpty());
        float difference = 0.0f;
        for (qsizetype i = 0; i < std::min(base.alternatives.size(), tuned.alternatives.size()); ++i)
            difference += base.alternatives[i].first == tuned.alternatives[i].first
                              ? std::fabs(base.alternatives[i].second - tuned.alternatives[i].second)
                              : 1.0f;
        QVERIFY2(difference > 1e-3f, "the adapter made no difference to the first token's distribution");

        // And back: the fine-tune answers exactly as before.
        QTest::mouseClick(adapter, Qt::LeftButton);
        QVERIFY(regenerate());
        const ChatToken again = firstToken();
        QCOMPARE(again.alternatives.size(), tuned.alternatives.size());
        for (qsizetype i = 0; i < again.alternatives.size(); ++i) {
            QCOMPARE(again.alternatives[i].first, tuned.alternatives[i].first);
            QVERIFY(std::fabs(again.alternatives[i].second - tuned.alternatives[i].second) < 1e-4f);
        }
    }
};

QTEST_MAIN(TestFinetuneMode)
#include "tst_finetune_mode.moc"
