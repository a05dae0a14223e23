// The Chat page on tiny models trained in initTestCase: it lists the run and
// loads it off the GUI thread; Send streams a reply into the transcript over
// several updates (and the worker batches tokens); Stop ends a reply within
// one token; Regenerate replaces the last reply; Clear empties the
// conversation; the conversation is saved with the run and restored by a new
// page; greedy replies are reproducible and match the engine fed the CLI's
// chat format; tokens carry alternatives that the inspector shows; a draft
// model reports its acceptance rate and one with another tokenizer is
// refused; a corrupt checkpoint and a missing GPU become messages, not crashes.
#include "core/generate/chat_stop_rules.h"
#include "core/generate/chat_transcript.h"
#include "core/generate/generator.h"
#include "core/train/load_model.h"
#include "core/train/run_dir.h"
#include "core/train/trainer.h"
#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/device_inventory.h"
#include "ui/pages/chat_page.h"
#include "ui/pages/chat_transcript_view.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/chat_worker.h"
#include "tests/ui/ui_test_support.h"

#include <QAction>
#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QMouseEvent>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSemaphore>
#include <QSignalSpy>
#include <QSpinBox>
#include <QStandardItemModel>
#include <QTest>
#include <QTextBlock>

#include <filesystem>
#include <fstream>

using namespace crucible;
using namespace crucible::ui;
namespace fs = std::filesystem;

namespace {

constexpr int kTimeoutMs = 60'000;

// The tiny model of the engine's trainer tests; a few steps are enough for
// the page (the replies need not make sense, only exist).
RunConfig tinyRun(int vocab, int d, int layers, int steps)
{
    RunConfig c;
    c.model.name = "tiny";
    c.model.vocab_size = vocab;
    c.model.d_model = d;
    c.model.n_layers = layers;
    c.model.n_heads = 4;
    c.model.n_kv_heads = 2;
    c.model.ff_dim = 2 * d;
    c.model.seq_len = 64;
    c.train.batch_size = 4;
    c.train.steps = steps;
    c.train.eval_every = 0;
    c.train.eval_batches = 1;
    c.train.sample_tokens = 4;
    c.train.schedule.warmup_steps = 1;
    c.train.optimizer.lr = 3e-3f;
    return c;
}

QString train(const QString& runsDir, const QString& name, const RunConfig& config)
{
    const fs::path dir = fs::path(runsDir.toStdString()) / name.toStdString();
    TrainerOptions options;
    options.run_dir = dir;
    Trainer trainer(config, options, nullptr);
    const RunSummary summary = trainer.run();
    if (summary.outcome != RunOutcome::finished) qWarning("training %s failed: %s", qPrintable(name), summary.error.c_str());
    return QString::fromStdString(dir.string());
}

// Picks the entry whose data is `value` as a choice from the open list does.
// (Arrow keys on a closed combo would load every run they pass.)
bool pick(QComboBox* combo, const QString& value)
{
    const int index = combo->findData(value);
    if (index < 0 || !combo->isEnabled()) return false;
    combo->setCurrentIndex(index);
    emit combo->activated(index);
    return true;
}

QString allTokenText(const ChatTurn& turn)
{
    QString text;
    for (const ChatToken& t : turn.tokens) text += t.text;
    return text;
}

} // namespace

class TestChatPage : public QObject {
    Q_OBJECT
    std::unique_ptr<test::IsolatedEnvironment> m_env;
    std::unique_ptr<AppContext> m_context;
    std::unique_ptr<ChatPage> m_page;
    QString m_run, m_draft, m_otherTokenizer;

    bool waitFor(ChatPage* page, ChatPage::State state)
    {
        return QTest::qWaitFor([&] { return page->state() == state; }, kTimeoutMs);
    }

    // Types a message as a person does and sends it with Ctrl+Enter.
    ChatReply sendAndWait(const QString& message)
    {
        QSignalSpy done(m_page.get(), &ChatPage::replyCompleted);
        m_page->input()->setFocus();
        QTest::keyClicks(m_page->input(), message);
        QTest::keyClick(m_page->input(), Qt::Key_Return, Qt::ControlModifier);
        if (!done.wait(kTimeoutMs)) return ChatReply{};
        return done.last().at(0).value<ChatReply>();
    }

    void setTemperature(double t)
    {
        auto* box = m_page->findChild<QDoubleSpinBox*>(QStringLiteral("temperatureBox"));
        QVERIFY(box);
        test::typeInto(box, QString::number(t));
        QCOMPARE(m_page->sampling().temperature, float(t));
    }

private slots:
    void initTestCase()
    {
        m_env = std::make_unique<test::IsolatedEnvironment>();
        m_run = train(m_env->runsDir(), QStringLiteral("tiny"), tinyRun(320, 64, 2, 8));
        // A smaller model on the same corpus and vocabulary: the same tokenizer.
        m_draft = train(m_env->runsDir(), QStringLiteral("tiny-draft"), tinyRun(320, 32, 1, 2));
        // Another vocabulary: another tokenizer. Kept outside the runs folder.
        m_otherTokenizer = train(m_env->path(QStringLiteral("elsewhere")), QStringLiteral("other-vocab"), tinyRun(300, 32, 1, 2));
        QVERIFY(RunDirectory(m_run.toStdString()).latest_checkpoint().has_value());

        m_context = std::make_unique<AppContext>();
        m_context->setRunsDir(m_env->runsDir());
        m_context->setCurrentRun(m_run);
        m_page = std::make_unique<ChatPage>(*m_context);
        m_page->resize(1280, 800);
        m_page->show();
        QVERIFY(QTest::qWaitForWindowExposed(m_page.get()));
        QTRY_VERIFY_WITH_TIMEOUT(!m_page->scanningRuns(), 30000);   // runs are scanned on a worker thread
        // Every update reaches the page: the transcript grows token by token.
        m_page->worker()->setUpdateInterval(std::chrono::milliseconds(0));
    }

    void cleanupTestCase()
    {
        m_page.reset();
        m_context.reset();
    }

    void isRegisteredAsAPage()
    {
        bool found = false;
        for (const PageSpec& spec : pageSpecs()) found = found || spec.name == QLatin1String("Chat");
        QVERIFY(found);
    }

    void withoutRunsSaysHowToGetOne()
    {
        AppContext context;
        context.setRunsDir(m_env->path(QStringLiteral("no-runs-here")));
        ChatPage page(context);
        page.show();
        QVERIFY(page.showsEmptyState());
        QCOMPARE(page.state(), ChatPage::State::NoModel);
        QVERIFY(!page.sendButton()->isEnabled());
        QSignalSpy requested(&context, &AppContext::pageRequested);
        auto* button = page.findChild<QPushButton*>(QStringLiteral("goToTrainButton"));
        QVERIFY(button && button->isVisible());
        QTest::mouseClick(button, Qt::LeftButton);
        QCOMPARE(requested.count(), 1);
        QCOMPARE(requested.first().at(0).toString(), QStringLiteral("Train"));
    }

    void listsTheRunAndLoadsIt()
    {
        QVERIFY(!m_page->showsEmptyState());
        QVERIFY(m_page->runCombo()->findData(m_run) >= 0);
        QVERIFY(m_page->runCombo()->findData(m_draft) >= 0);
        QCOMPARE(m_page->runCombo()->currentData().toString(), m_run);   // the context's current run
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Ready));
        QCOMPARE(m_page->modelInfo().context, 64);
        QCOMPARE(m_page->modelInfo().vocabulary, 320);
        QVERIFY(m_page->modelInfo().step > 0);
        // Defaults a conversation starts with.
        const SamplingConfig s = m_page->sampling();
        QCOMPARE(s.temperature, 0.8f);
        QCOMPARE(s.top_k, 40);
        QCOMPARE(s.top_p, 0.95f);
        QCOMPARE(s.min_p, 0.0f);
        QCOMPARE(s.repetition_penalty, 1.1f);
        QCOMPARE(s.presence_penalty, 0.0f);
        QCOMPARE(m_page->maxNewTokens(), ChatStopRules::kDefaultMaxReplyTokens);
        // Without a GPU, CUDA is listed but cannot be chosen, and says why.
        QVERIFY(QTest::qWaitFor([&] { return m_context->devices()->cudaProbed(); }, kTimeoutMs));
        if (!m_context->devices()->cudaAvailable()) {
            QComboBox* devices = m_page->deviceCombo();
            const int cuda = devices->findData(QStringLiteral("cuda:0"));
            QVERIFY(cuda >= 0);
            QVERIFY(!qobject_cast<QStandardItemModel*>(devices->model())->item(cuda)->isEnabled());
            QVERIFY(!devices->itemData(cuda, Qt::ToolTipRole).toString().isEmpty());
            QCOMPARE(devices->currentData().toString(), QStringLiteral("cpu"));
        }
    }

    void sendStreamsTokensIntoTheTranscript()
    {
        QSignalSpy shown(m_page.get(), &ChatPage::tokensShown);
        QList<int> lengths;
        connect(m_page.get(), &ChatPage::tokensShown, this,
                [&] { lengths << m_page->transcript()->toPlainText().size(); });
        const QString message = QStringLiteral("To be, or not to be");
        QVERIFY(!m_page->sendButton()->isEnabled());   // nothing typed yet
        const ChatReply reply = sendAndWait(message);
        disconnect(m_page.get(), &ChatPage::tokensShown, this, nullptr);
        QVERIFY2(reply.id != 0, "no reply");
        QVERIFY2(reply.generatedTokens >= 3, qPrintable(QStringLiteral("only %1 tokens").arg(reply.generatedTokens)));
        QVERIFY(shown.count() >= 3);
        for (int i = 1; i < lengths.size(); ++i) QVERIFY(lengths[i] >= lengths[i - 1]);
        QVERIFY(lengths.last() > lengths.first());
        QCOMPARE(m_page->conversation().turns.size(), 1);
        const ChatTurn& turn = m_page->conversation().turns[0];
        QCOMPARE(turn.message, message);
        QCOMPARE(turn.reply, reply.text);
        QCOMPARE(allTokenText(turn), turn.reply);
        QVERIFY(m_page->transcript()->toPlainText().contains(message));
        QVERIFY(m_page->findChild<QLabel*>(QStringLiteral("replyStats"))->text().contains(QLatin1String("tok/s")));
        QVERIFY(reply.prefillTokensPerSecond > 0 && reply.decodeTokensPerSecond > 0);
        QVERIFY(m_page->input()->toPlainText().isEmpty());
        QCOMPARE(m_page->state(), ChatPage::State::Ready);
    }

    void workerBatchesTokens()
    {
        // With a long interval every token of a reply waits for the end: one
        // update for the first token, one for the rest.
        m_page->worker()->setUpdateInterval(std::chrono::hours(1));
        QSignalSpy shown(m_page.get(), &ChatPage::tokensShown);
        const ChatReply reply = sendAndWait(QStringLiteral("Speak again"));
        m_page->worker()->setUpdateInterval(std::chrono::milliseconds(0));
        QVERIFY(reply.generatedTokens >= 3);
        QVERIFY2(shown.count() <= 2, qPrintable(QString::number(shown.count())));
    }

    void stopEndsTheReplyWithinOneToken()
    {
        // Hold the worker after its first token until the GUI has pressed Stop,
        // so the test does not race a model that finishes in milliseconds.
        QSemaphore gate;
        auto hold = connect(m_page->worker(), &ChatWorker::tokensReady, m_page->worker(), [&gate] { gate.acquire(); },
                            Qt::DirectConnection);
        QSignalSpy done(m_page.get(), &ChatPage::replyCompleted);
        QSignalSpy shown(m_page.get(), &ChatPage::tokensShown);
        m_page->input()->setPlainText(QStringLiteral("Tell me a long story"));
        QTest::mouseClick(m_page->sendButton(), Qt::LeftButton);
        QCOMPARE(m_page->state(), ChatPage::State::Generating);
        QVERIFY(shown.wait(kTimeoutMs));
        QVERIFY(m_page->stopButton()->isEnabled());
        QTest::mouseClick(m_page->stopButton(), Qt::LeftButton);
        QCOMPARE(m_page->state(), ChatPage::State::Stopping);
        disconnect(hold);
        gate.release(1000);
        QVERIFY(done.wait(kTimeoutMs));
        const ChatReply reply = done.last().at(0).value<ChatReply>();
        QCOMPARE(reply.stopReason, QStringLiteral("cancelled"));
        QVERIFY2(reply.generatedTokens <= 2, qPrintable(QString::number(reply.generatedTokens)));
        QCOMPARE(m_page->state(), ChatPage::State::Ready);
        // What was said stays.
        QCOMPARE(m_page->conversation().turns.back().reply, reply.text);
    }

    void regenerateReplacesTheLastReply()
    {
        setTemperature(1.0);
        const int turns = m_page->conversation().turns.size();
        QVERIFY(turns >= 1);
        const QString message = m_page->conversation().turns.back().message;
        const int draws = m_page->conversation().draws;
        QSignalSpy done(m_page.get(), &ChatPage::replyCompleted);
        QVERIFY(m_page->regenerateButton()->isEnabled());
        QTest::mouseClick(m_page->regenerateButton(), Qt::LeftButton);
        QVERIFY(done.wait(kTimeoutMs));
        const ChatReply reply = done.last().at(0).value<ChatReply>();
        QCOMPARE(m_page->conversation().turns.size(), turns);
        QCOMPARE(m_page->conversation().turns.back().message, message);
        QCOMPARE(m_page->conversation().turns.back().reply, reply.text);
        QCOMPARE(m_page->conversation().draws, draws + 1);
        QCOMPARE(m_page->transcript()->toPlainText().count(message), 1);
    }

    void clearEmptiesTheConversation()
    {
        QVERIFY(!m_page->conversation().isEmpty());
        QTest::mouseClick(m_page->clearButton(), Qt::LeftButton);
        QVERIFY(m_page->conversation().isEmpty());
        QVERIFY(m_page->transcript()->toPlainText().trimmed().isEmpty());
        QVERIFY(!m_page->regenerateButton()->isEnabled());
        QVERIFY(!m_page->clearButton()->isEnabled());
        // Nothing left worth keeping: the run folder is as training left it.
        QVERIFY(!QFileInfo::exists(m_page->conversationFile()));
    }

    void greedyRepliesAreReproducible()
    {
        setTemperature(0.0);
        const QString message = QStringLiteral("Good morrow");
        const ChatReply first = sendAndWait(message);
        QVERIFY(first.generatedTokens > 0);
        QTest::mouseClick(m_page->clearButton(), Qt::LeftButton);
        const ChatReply second = sendAndWait(message);
        QCOMPARE(second.text, first.text);
        QCOMPARE(second.generatedTokens, first.generatedTokens);

        // The engine fed the chat format of crucible-cli says the same.
        LoadedModel model = load_model(m_run.toStdString(), BackendOptions{});
        Generator generator(*model.params, model.tokenizer, 1, model.config.seq_len);
        ChatTranscript transcript(model.tokenizer, ChatFormat{});
        GenerationRequest request;
        transcript.prompt(message.toStdString(), ChatTranscript::prompt_budget(model.config.seq_len, m_page->maxNewTokens()),
                          request.prompts.emplace_back());
        request.sampling = m_page->sampling();
        ChatStopRules rules;
        rules.max_reply_tokens = m_page->maxNewTokens();
        rules.apply(transcript, request.prompts[0].size(), model.config.seq_len, request);
        const GenerationStats stats = generator.generate(request, nullptr);
        QCOMPARE(QString::fromStdString(stats.texts[0]), first.text);
    }

    void tokensCarryAlternativesForTheInspector()
    {
        QVERIFY(!m_page->conversation().isEmpty());
        const ChatTurn& turn = m_page->conversation().turns.back();
        QVERIFY(!turn.tokens.isEmpty());
        const ChatToken& token = turn.tokens.front();
        QCOMPARE(token.alternatives.size(), 5);
        for (int i = 1; i < token.alternatives.size(); ++i)
            QVERIFY(token.alternatives[i].second <= token.alternatives[i - 1].second);
        QVERIFY(token.probability > 0 && token.probability <= 1);
        // Greedy: the chosen token is the most likely one.
        QCOMPARE(token.alternatives.front().first, token.piece);

        QVERIFY(!m_page->inspector()->isVisible());
        m_page->alternativesToggle()->click();
        QVERIFY(m_page->inspector()->isVisible());
        // Hover a token of the reply that begins with a visible character: the inspector shows it.
        ChatTranscriptView* view = m_page->transcript();
        const int turnIndex = m_page->conversation().turns.size() - 1;
        int index = 0;
        while (index < turn.tokens.size() && (turn.tokens[index].text.isEmpty() || turn.tokens[index].text.front().isSpace()))
            ++index;
        QVERIFY(index < turn.tokens.size());
        QTextCursor cursor = view->tokenCursor(turnIndex, index);
        QVERIFY(!cursor.isNull());
        QCOMPARE(cursor.selectedText(), turn.tokens[index].text);
        QVERIFY(cursor.charFormat().background().style() != Qt::NoBrush);   // coloured by probability
        QSignalSpy hovered(view, &ChatTranscriptView::tokenHovered);
        cursor.setPosition(cursor.selectionStart());
        const QPoint at = view->cursorRect(cursor).center() + QPoint(2, 0);
        QMouseEvent move(QEvent::MouseMove, at, view->viewport()->mapToGlobal(at), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
        QApplication::sendEvent(view->viewport(), &move);
        QCOMPARE(hovered.count(), 1);
        QCOMPARE(hovered.first().at(1).toInt(), index);
        QCOMPARE(m_page->inspector()->chosen(), turn.tokens[index].piece);
        m_page->alternativesToggle()->click();
        QVERIFY(!m_page->inspector()->isVisible());
    }

    void conversationIsKeptWithTheRun()
    {
        auto* system = m_page->findChild<QPlainTextEdit*>(QStringLiteral("systemEdit"));
        QVERIFY(system);
        system->setPlainText(QStringLiteral("A street in Verona."));
        const ChatReply reply = sendAndWait(QStringLiteral("Who goes there?"));
        QVERIFY(reply.id != 0);
        const QString file = m_page->conversationFile();
        QCOMPARE(file, QDir(m_run).filePath(QStringLiteral("chat.json")));
        QFile saved(file);
        QVERIFY(saved.open(QIODevice::ReadOnly));
        const QJsonObject json = QJsonDocument::fromJson(saved.readAll()).object();
        QCOMPARE(json.value(QStringLiteral("system")).toString(), QStringLiteral("A street in Verona."));
        QCOMPARE(json.value(QStringLiteral("turns")).toArray().size(), m_page->conversation().turns.size());

        // A new page on the same run shows the same conversation.
        ChatPage again(*m_context);
        QTRY_VERIFY_WITH_TIMEOUT(!again.scanningRuns(), 30000);   // runs are scanned on a worker thread
        QCOMPARE(again.selectedPath(), m_run);
        const ChatConversation& a = m_page->conversation();
        const ChatConversation& b = again.conversation();
        QCOMPARE(b.system, a.system);
        QCOMPARE(b.turns.size(), a.turns.size());
        for (int i = 0; i < a.turns.size(); ++i) {
            QCOMPARE(b.turns[i].message, a.turns[i].message);
            QCOMPARE(b.turns[i].reply, a.turns[i].reply);
            QCOMPARE(b.turns[i].tokens.size(), a.turns[i].tokens.size());
        }
        QCOMPARE(again.transcript()->toPlainText(), m_page->transcript()->toPlainText());
        // The run can still be deleted from the Runs page: chat.json is Crucible's own.
    }

    void draftModelReportsItsAcceptance()
    {
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Ready));
        QVERIFY(pick(m_page->draftCombo(), m_draft));
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Ready));
        QCOMPARE(m_page->modelInfo().draftPath, m_draft);
        const ChatReply reply = sendAndWait(QStringLiteral("Speak"));
        QVERIFY(reply.generatedTokens > 0);
        QVERIFY(reply.draftProposed > 0);
        QVERIFY(m_page->findChild<QLabel*>(QStringLiteral("replyStats"))->text().contains(QLatin1String("draft acceptance")));
    }

    void draftWithAnotherTokenizerIsRefused()
    {
        QVERIFY(m_page->openPath(m_otherTokenizer));   // becomes the selected run: choose the real one again
        QTRY_VERIFY_WITH_TIMEOUT(!m_page->scanningRuns(), 30000);
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Ready));
        QVERIFY(pick(m_page->runCombo(), m_run));
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Ready));
        QSignalSpy state(m_page.get(), &ChatPage::stateChanged);
        QVERIFY(pick(m_page->draftCombo(), m_otherTokenizer));
        QVERIFY(state.wait(kTimeoutMs) && waitFor(m_page.get(), ChatPage::State::Ready));
        QVERIFY(m_page->modelInfo().draftPath.isEmpty());
        QCOMPARE(m_page->draftCombo()->currentIndex(), 0);
        QCOMPARE(m_page->banner()->kind(), MessageBanner::Kind::Warning);
        QVERIFY2(m_page->banner()->text().contains(QLatin1String("tokenizer")), qPrintable(m_page->banner()->text()));
        // The model itself still answers.
        QVERIFY(sendAndWait(QStringLiteral("Again")).id != 0);
    }

    void resetRestoresTheSamplingDefaults()
    {
        setTemperature(1.5);
        auto* topK = m_page->findChild<QSpinBox*>(QStringLiteral("topKBox"));
        test::typeInto(topK, QStringLiteral("7"));
        QCOMPARE(m_page->sampling().top_k, 7);
        QTest::mouseClick(m_page->findChild<QPushButton*>(QStringLiteral("resetSamplingButton")), Qt::LeftButton);
        const SamplingConfig s = m_page->sampling();
        QCOMPARE(s.temperature, 0.8f);
        QCOMPARE(s.top_k, 40);
        QCOMPARE(s.top_p, 0.95f);
        QCOMPARE(s.min_p, 0.0f);
        QCOMPARE(s.repetition_penalty, 1.1f);
        QCOMPARE(s.presence_penalty, 0.0f);
        QCOMPARE(m_page->maxNewTokens(), ChatStopRules::kDefaultMaxReplyTokens);
    }

    void corruptCheckpointIsAMessage()
    {
        const fs::path broken = fs::path(m_env->runsDir().toStdString()) / "broken";
        fs::copy(m_run.toStdString(), broken, fs::copy_options::recursive);
        const auto checkpoint = RunDirectory(broken).latest_checkpoint();
        QVERIFY(checkpoint.has_value());
        std::ofstream(*checkpoint / "model.safetensors", std::ios::trunc) << "not a model";
        m_context->notifyRunsChanged();
        QTRY_VERIFY_WITH_TIMEOUT(!m_page->scanningRuns(), 30000);
        const QString root = QString::fromStdString(broken.string());
        QVERIFY(m_page->runCombo()->findData(root) >= 0);
        QVERIFY(pick(m_page->runCombo(), root));
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Failed));
        QCOMPARE(m_page->banner()->kind(), MessageBanner::Kind::Error);
        QVERIFY(m_page->banner()->isVisible());
        QVERIFY(m_page->banner()->text().contains(QLatin1String("broken")));
        m_page->input()->setPlainText(QStringLiteral("Hello?"));
        QVERIFY(!m_page->sendButton()->isEnabled());
        m_page->send();   // ignored, not a crash
        QCOMPARE(m_page->state(), ChatPage::State::Failed);
        // Back to a good run, and all is well.
        QVERIFY(pick(m_page->runCombo(), m_run));
        QVERIFY(waitFor(m_page.get(), ChatPage::State::Ready));
        QVERIFY(m_page->sendButton()->isEnabled());
        m_page->input()->clear();
    }
};

QTEST_MAIN(TestChatPage)
#include "tst_chat_page.moc"
