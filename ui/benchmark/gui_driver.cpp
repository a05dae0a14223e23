#include "ui/benchmark/gui_driver.h"

#include "ui/app_context.h"
#include "ui/main_window.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/chat_page.h"
#include "ui/pages/data_page.h"
#include "ui/pages/runs_page.h"
#include "ui/pages/train_page.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/training_controller.h"

#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QJsonDocument>
#include <QJsonObject>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSlider>
#include <QTextStream>
#include <QElapsedTimer>
#include <QTimer>
#include <QTreeWidget>

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace crucible::ui {

namespace {

double median(std::vector<double> v)
{
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void printLine(const QByteArray& text)
{
    std::fwrite(text.constData(), 1, size_t(text.size()), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
}

// CPU time the calling thread has used, in seconds: what the GUI itself costs
// the training threads it shares the cores with.
double threadCpuSeconds()
{
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

// Steps before this are warm-up (allocation, first-touch, cache fill), as the
// CLI's `bench train` also leaves them out.
constexpr int64_t kWarmupSteps = 3;

} // namespace

GuiDriver::GuiDriver(MainWindow& window, AppContext& context, GuiDriverOptions options, QObject* parent)
    : QObject(parent), m_window(window), m_context(context), m_options(std::move(options))
{
}

void GuiDriver::begin()
{
    if (!m_options.screenshotDir.isEmpty() && m_options.page == QLatin1String("Chat")) {
        takeChatScreenshot();
        return;
    }
    RunConfigModel* config = m_context.config();
    try {
        config->applyPreset(m_options.preset);
    } catch (const std::exception& e) {
        printLine(QJsonDocument(QJsonObject{{QStringLiteral("error"), QString::fromUtf8(e.what())}})
                      .toJson(QJsonDocument::Compact));
        QTimer::singleShot(0, qApp, [] { QCoreApplication::exit(2); });
        return;
    }
    TrainConfig t = config->config().train;
    if (m_options.steps > 0) t.steps = m_options.steps;
    if (m_options.batch > 0) t.batch_size = m_options.batch;
    if (!m_options.device.isEmpty()) t.device = m_options.device.toStdString();
    if (!m_options.screenshotDir.isEmpty()) {
        // Pictures want validation points on the loss chart early on.
        t.eval_every = 20;
        t.eval_batches = 8;
    }
    config->setTrain(t);
    m_window.showPage(QStringLiteral("Train"));

    TrainingController* training = m_context.training();
    connect(training, &TrainingController::stepsReceived, this, &GuiDriver::onSteps);
    connect(training, &TrainingController::finished, this, &GuiDriver::onFinished);

    auto* page = m_window.page<TrainPage>();
    QTimer::singleShot(200, this, [this, page] {
        if (!page->startButton()->isEnabled()) {
            printLine(QJsonDocument(QJsonObject{{QStringLiteral("error"), page->blockingReasons().join(QLatin1Char(' '))}})
                          .toJson(QJsonDocument::Compact));
            QCoreApplication::exit(2);
            return;
        }
        m_probe.start();
        m_cpuAtStart = threadCpuSeconds();
        m_wall.start();
        page->startButton()->click();
    });
}

void GuiDriver::onSteps(const QVector<StepMetrics>& steps)
{
    ++m_updates;
    for (const StepMetrics& m : steps) {
        if (m.step > kWarmupSteps) m_tokensPerS.push_back(m.tokens_per_s);
        m_lastStep = m.step;
    }
    if (!m_options.screenshotDir.isEmpty() && !m_screenshotsTaken && m_lastStep >= m_options.afterSteps) {
        m_screenshotsTaken = true;
        takeScreenshots();
    }
}

void GuiDriver::onFinished(const RunSummary& summary)
{
    m_probe.stop();
    if (m_options.benchmark) {
        const EventLoopProbe::Stats lag = m_probe.stats();
        const RunConfig& c = m_context.config()->config();
        QJsonObject out{
            {QStringLiteral("preset"), m_options.preset},
            {QStringLiteral("steps"), qint64(summary.steps)},
            {QStringLiteral("batch"), c.train.batch_size},
            {QStringLiteral("seq"), c.train.resolved_seq_len(c.model)},
            {QStringLiteral("device"), QString::fromStdString(m_context.training()->runInfo().device)},
            {QStringLiteral("outcome"), summary.outcome == RunOutcome::finished ? QStringLiteral("finished")
                                        : summary.outcome == RunOutcome::stopped ? QStringLiteral("stopped")
                                                                                 : QStringLiteral("failed")},
            {QStringLiteral("gui_tokens_per_s_median"), median(m_tokensPerS)},
            {QStringLiteral("gui_tokens_per_s_mean_overall"),
             summary.elapsed_s > 0 ? double(summary.steps) * double(m_context.training()->runInfo().tokens_per_step) /
                                         summary.elapsed_s
                                   : 0.0},
            {QStringLiteral("gui_updates"), m_updates},
            {QStringLiteral("gui_thread_cpu_ms_per_s"),
             1000.0 * (threadCpuSeconds() - m_cpuAtStart) / std::max(1e-9, m_wall.elapsed() / 1000.0)},
            {QStringLiteral("event_loop_lag_ms"),
             QJsonObject{{QStringLiteral("p50"), lag.p50_ms},
                         {QStringLiteral("p99"), lag.p99_ms},
                         {QStringLiteral("max"), lag.max_ms},
                         {QStringLiteral("ticks"), lag.ticks},
                         {QStringLiteral("interval_ms"), 10}}},
            {QStringLiteral("run_dir"), m_context.training()->runDir()},
        };
        if (!summary.error.empty()) out.insert(QStringLiteral("error"), QString::fromStdString(summary.error));
        printLine(QJsonDocument(out).toJson(QJsonDocument::Indented));
        QCoreApplication::exit(summary.outcome == RunOutcome::finished ? 0 : 1);
        return;
    }
    if (!m_options.screenshotDir.isEmpty()) {
        if (!m_screenshotsTaken) {
            m_screenshotsTaken = true;
            takeScreenshots();   // a run shorter than --after-steps: pictures of the end
            QTimer::singleShot(12000, qApp, &QCoreApplication::quit);
            return;
        }
        QTimer::singleShot(300, qApp, &QCoreApplication::quit);
    }
}

void GuiDriver::grab(const QString& page, const QString& file)
{
    m_window.showPage(page);
    QApplication::processEvents();
    const QString path = QDir(m_options.screenshotDir).filePath(file);
    const bool ok = m_window.grab().save(path, "PNG", 9);
    printLine((ok ? "saved " : "failed to save ") + path.toUtf8());
}

void GuiDriver::takeScreenshots()
{
    QDir().mkpath(m_options.screenshotDir);
    // Each page gets a moment to lay out and redraw its charts before the grab.
    grab(QStringLiteral("Train"), QStringLiteral("train.png"));
    m_window.showPage(QStringLiteral("Model"));
    QTimer::singleShot(600, this, [this] {
        grab(QStringLiteral("Model"), QStringLiteral("model.png"));
        auto* data = m_window.page<DataPage>();
        m_window.showPage(QStringLiteral("Data"));
        auto afterData = [this] {
            QTimer::singleShot(400, this, [this] {
                grab(QStringLiteral("Data"), QStringLiteral("data.png"));
                auto* runs = m_window.page<RunsPage>();
                m_window.showPage(QStringLiteral("Runs"));
                runs->refresh();
                // The runs are scanned on a worker thread: wait for the table.
                QElapsedTimer waited;
                waited.start();
                while (runs->scanning() && waited.elapsed() < 30000) QCoreApplication::processEvents(QEventLoop::AllEvents, 50);
                // Overlay the two newest finished runs, if the folder has them.
                QTreeWidget* table = runs->table();
                int ticked = 0;
                for (int i = 0; i < table->topLevelItemCount() && ticked < 2; ++i) {
                    QTreeWidgetItem* item = table->topLevelItem(i);
                    if (item->text(7) != QLatin1String("finished")) continue;
                    item->setCheckState(0, Qt::Checked);
                    if (ticked++ == 0) table->setCurrentItem(item);
                }
                // Smoothed, as one usually compares noisy curves.
                if (auto* slider = runs->findChild<QSlider*>(QStringLiteral("smoothingSlider"))) slider->setValue(60);
                QTimer::singleShot(800, this, [this] {
                    grab(QStringLiteral("Runs"), QStringLiteral("runs.png"));
                    m_window.showPage(QStringLiteral("System"));
                    QTimer::singleShot(400, this, [this] {
                        grab(QStringLiteral("System"), QStringLiteral("system.png"));
                        m_window.showPage(QStringLiteral("Train"));
                        m_context.training()->stop();
                    });
                });
            });
        };
        if (data->tokenizer()) {
            afterData();
        } else {
            auto* connection = new QMetaObject::Connection;
            *connection = connect(data, &DataPage::analysisFinished, this, [connection, afterData] {
                disconnect(*connection);
                delete connection;
                afterData();
            });
            if (!data->isAnalyzing()) data->analyze();
        }
    });
}

void GuiDriver::takeChatScreenshot()
{
    static const QStringList messages = {
        QStringLiteral("Good morrow, fair lady. What news from Verona?"),
        QStringLiteral("And what of Romeo? Speak, I pray thee."),
        QStringLiteral("Then tell me truly: dost thou love him?"),
    };
    auto* chat = m_window.page<ChatPage>();
    m_window.showPage(QStringLiteral("Chat"));
    if (chat->scanningRuns()) {   // its run list is on its way from the worker thread
        QTimer::singleShot(50, this, &GuiDriver::takeChatScreenshot);
        return;
    }
    if (chat->state() == ChatPage::State::NoModel && chat->selectedPath().isEmpty()) {
        printLine("error: no run with a checkpoint in the runs folder");
        QTimer::singleShot(0, qApp, [] { QCoreApplication::exit(2); });
        return;
    }
    QComboBox* draft = chat->draftCombo();
    for (int i = 1; i < draft->count(); ++i) {
        if (draft->itemText(i).contains(QLatin1String("draft")) && draft->itemData(i) != chat->selectedPath()) {
            draft->setCurrentIndex(i);
            emit draft->activated(i);
            break;
        }
    }
    chat->alternativesToggle()->setChecked(true);
    auto sendNext = [this, chat] {
        const int turn = int(chat->conversation().turns.size());
        if (chat->state() != ChatPage::State::Ready || turn >= messages.size()) return;
        chat->input()->setPlainText(messages[turn]);
        chat->send();
    };
    connect(chat, &ChatPage::stateChanged, this, [sendNext](ChatPage::State s) {
        if (s == ChatPage::State::Ready) QTimer::singleShot(0, sendNext);
    });
    connect(chat, &ChatPage::stateChanged, this, [this, chat](ChatPage::State s) {
        if (s != ChatPage::State::Failed) return;
        printLine("error: " + chat->banner()->text().toUtf8());
        QCoreApplication::exit(2);
    });
    // Mid-reply: the third answer streams in while the inspector shows an
    // uncertain token of the second.
    auto shoot = [this, chat] {
        if (m_screenshotsTaken) return;
        m_screenshotsTaken = true;
        const ChatTurn& shown = chat->conversation().turns[1];
        int token = 0;
        for (int i = 0; i < shown.tokens.size(); ++i) {
            const ChatToken& t = shown.tokens[i];
            if (t.probability >= 0 && t.probability < 0.5f && t.text.trimmed().size() >= 3) {
                token = i;
                break;
            }
        }
        chat->inspectToken(1, token);
        QDir().mkpath(m_options.screenshotDir);
        // Not grab(): its processEvents() would deliver the end of the reply first.
        const QString path = QDir(m_options.screenshotDir).filePath(QStringLiteral("chat.png"));
        printLine((m_window.grab().save(path, "PNG", 9) ? "saved " : "failed to save ") + path.toUtf8());
        chat->stop();
        QTimer::singleShot(500, qApp, &QCoreApplication::quit);
    };
    connect(chat, &ChatPage::tokensShown, this, [chat, shoot](int tokens) {
        if (chat->conversation().turns.size() == messages.size() && tokens >= 18) shoot();
    });
    connect(chat, &ChatPage::replyCompleted, this, [chat, shoot] {
        if (chat->conversation().turns.size() == messages.size()) shoot();   // a reply shorter than that
    });
    sendNext();
}

} // namespace crucible::ui
