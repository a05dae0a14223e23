#include "ui/pages/train_page.h"

#include "core/train/finetune_estimate.h"
#include "core/train/memory_estimate.h"
#include "ui/pages/finetune_panel.h"
#include "core/train/run_catalog.h"
#include "ui/app_context.h"
#include "ui/charts/chart_controls.h"
#include "ui/charts/live_chart.h"
#include "ui/charts/metric_samples.h"
#include "ui/format.h"
#include "ui/models/device_inventory.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/train_settings.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/message_banner.h"
#include "ui/widgets/value_label.h"
#include "ui/workers/training_controller.h"

#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSplitter>
#include <QTabWidget>
#include <QTextBrowser>
#include <QVBoxLayout>

#include <cmath>

namespace crucible::ui {

namespace {

// The charts and the metric of each series: one table for the live steps,
// the evaluations and a run's history.
struct SeriesSpec {
    Metric metric;
    const char* legend;
    int color;   // theme::series index
};
struct ChartSpec {
    const char* objectName;
    const char* title;
    std::vector<SeriesSpec> series;   // the first one decides the value format
    const char* toolTip = nullptr;
};

const std::vector<ChartSpec>& chartSpecs()
{
    static const std::vector<ChartSpec> specs = {
        {"lossChart", QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "Loss"),
         {{Metric::loss, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "train"), 0},
          {Metric::val_loss, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "validation"), 1}}},
        {"lrChart", QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "Learning rate"),
         {{Metric::lr, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "learning rate"), 3}}},
        {"gradChart", QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "Gradient norm (before clipping)"),
         {{Metric::grad_norm, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "grad norm"), 4}}},
        {"speedChart", QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "Tokens per second"),
         {{Metric::tokens_per_s, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "tokens/s"), 2}}},
        {"mfuChart", QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "MFU (% of the device's peak)"),
         {{Metric::mfu, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "MFU %"), 5}}},
        {"memoryChart", QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "Device memory (MB)"),
         {{Metric::memory_bytes, QT_TRANSLATE_NOOP("crucible::ui::TrainPage", "measured"), 7}},
         QT_TRANSLATE_NOOP("crucible::ui::TrainPage",
                           "Measured after every step. On a GPU: the bytes the run holds on it (weights, "
                           "gradients, optimizer state, activations, scratch). On the CPU: the whole process's "
                           "resident memory (the app, the corpus and libraries too). The dashed line is the "
                           "Model page's estimate of what the run itself needs.")},
    };
    return specs;
}

enum Tile { TileStep, TileLoss, TileValLoss, TileSpeed, TileMfu, TileElapsed, TileCount };

QString newRunDir(const QString& runsDir, const RunConfig& c)
{
    // A fine-tune is named after its method (lora or qlora) instead of the optimizer.
    const QString method = c.finetune ? QLatin1String(c.finetune->qlora ? "qlora" : "lora")
                                      : QLatin1String(to_string(c.train.optimizer.type));
    const QString base = QStringLiteral("%1-%2-%3")
                             .arg(qs(c.model.name), method,
                                  QDateTime::currentDateTime().toString(QStringLiteral("yyyyMMdd-HHmmss")));
    QString dir = QDir(runsDir).filePath(base);
    for (int n = 2; QFileInfo::exists(dir); ++n) dir = QDir(runsDir).filePath(base + QStringLiteral("-%1").arg(n));
    return dir;
}

} // namespace

TrainPage::TrainPage(AppContext& context, QWidget* parent) : QWidget(parent), m_context(context)
{
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    addPageHeader(outer, tr("Train"),
                  tr("Every setting is live until you press Start; the charts follow the run as it trains."));
    outer->addWidget(buildControls());
    m_banner = new MessageBanner(this);
    m_banner->setObjectName(QStringLiteral("trainBanner"));
    outer->addWidget(m_banner);

    auto* splitter = new QSplitter(Qt::Horizontal, this);
    splitter->setChildrenCollapsible(false);
    auto* scroll = new QScrollArea(splitter);
    scroll->setObjectName(QStringLiteral("formScroll"));
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_settings = new TrainSettings(context, scroll);
    scroll->setWidget(m_settings);
    scroll->setMinimumWidth(360);
    splitter->addWidget(scroll);
    splitter->addWidget(buildMonitor());
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({390, 1000});
    outer->addWidget(splitter, 1);

    TrainingController* training = context.training();
    connect(training, &TrainingController::stateChanged, this, &TrainPage::updateControls);
    connect(training, &TrainingController::runStarting, this, &TrainPage::onRunStarting);
    connect(training, &TrainingController::started, this, &TrainPage::onStarted);
    connect(training, &TrainingController::statusChanged, this, [this](const QString& s) {
        m_status->setText(s.left(1).toUpper() + s.mid(1) + QStringLiteral("…"));
        // "Evaluating…" stays until a later step arrives (showLatestNumbers).
        m_statusStep = m_lastStep;
        log(s);
    });
    // Each phase's status text comes first: training replaces it with the run's own line.
    connect(training, &TrainingController::phaseChanged, this, [this](TrainerPhase phase) {
        if (phase == TrainerPhase::training) m_status->setText(trainingStatus());
    });
    connect(training, &TrainingController::stepsReceived, this, &TrainPage::onSteps);
    connect(training, &TrainingController::evalReceived, this, &TrainPage::onEval);
    connect(training, &TrainingController::sampleReceived, this, &TrainPage::onSample);
    connect(training, &TrainingController::checkpointWritten, this, [this](qint64 step, const QString& path) {
        log(tr("checkpoint at step %1: %2").arg(step).arg(path));
    });
    connect(training, &TrainingController::warningRaised, this, [this](const QString& message) {
        log(tr("warning: %1").arg(message));
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("Warning from the trainer"), message);
    });
    connect(training, &TrainingController::pausedChanged, this, [this](bool paused) {
        log(paused ? tr("paused") : tr("resumed"));
        if (paused) m_status->setText(tr("Paused at step %1").arg(m_lastStep));
        updateControls();
    });
    connect(training, &TrainingController::finished, this, [this](const RunSummary& s) {
        m_numbersTimer.stop();
        showLatestNumbers();
        onFinished(s);
    });
    m_numbersTimer.setSingleShot(true);
    m_numbersTimer.setInterval(250);
    connect(&m_numbersTimer, &QTimer::timeout, this, &TrainPage::showLatestNumbers);
    connect(context.config(), &RunConfigModel::configChanged, this, &TrainPage::updateControls);
    connect(context.devices(), &DeviceInventory::changed, this, &TrainPage::updateControls);
    connect(&context, &AppContext::runOpened, this, [this](const QString& dir) {
        if (m_context.training()->isActive()) return;
        clearMonitor();
        m_runName = QFileInfo(dir).fileName();
        loadHistory(dir);
        m_status->setText(tr("Showing %1").arg(m_runName));
    });
    updateControls();
}

QWidget* TrainPage::buildControls()
{
    auto* bar = new QWidget(this);
    auto* layout = new QVBoxLayout(bar);
    layout->setContentsMargins(0, 0, 0, 4);
    auto* row = new QHBoxLayout;
    m_start = new QPushButton(tr("Start"), bar);
    m_start->setObjectName(QStringLiteral("startButton"));
    m_start->setProperty("primary", true);
    m_start->setMinimumWidth(96);
    m_pause = new QPushButton(tr("Pause"), bar);
    m_pause->setObjectName(QStringLiteral("pauseButton"));
    m_stop = new QPushButton(tr("Stop"), bar);
    m_stop->setObjectName(QStringLiteral("stopButton"));
    m_stop->setToolTip(tr("Stop after the current step and write a checkpoint; the run can be resumed"));
    m_status = new ValueLabel(QStringLiteral("Training nano-adamw-20250101-000000 on CPU (16 threads)"), bar);
    m_status->setObjectName(QStringLiteral("trainStatus"));
    m_status->setText(tr("Ready"));
    m_progress = new QProgressBar(bar);
    m_progress->setObjectName(QStringLiteral("trainProgress"));
    m_progress->setMaximumWidth(260);
    m_progress->setMinimumWidth(160);
    // Steps done of the run's total; "no run" until one starts (not "0 / 1").
    m_progress->setFormat(tr("no run"));
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    m_eta = new ValueLabel(QStringLiteral("12 h 59 m left"), bar);
    m_eta->setColor(theme::mutedText());
    row->addWidget(m_start);
    row->addWidget(m_pause);
    row->addWidget(m_stop);
    row->addSpacing(12);
    row->addWidget(m_status, 1);
    row->addWidget(m_progress);
    row->addWidget(m_eta);
    layout->addLayout(row);
    m_blocked = new QLabel(bar);
    m_blocked->setObjectName(QStringLiteral("blockedReasons"));
    m_blocked->setWordWrap(true);
    m_blocked->setTextFormat(Qt::RichText);
    m_blocked->hide();
    layout->addWidget(m_blocked);

    connect(m_start, &QPushButton::clicked, this, &TrainPage::start);
    connect(m_pause, &QPushButton::clicked, this, &TrainPage::togglePause);
    connect(m_stop, &QPushButton::clicked, this, &TrainPage::stop);
    return bar;
}

QWidget* TrainPage::buildMonitor()
{
    auto* monitor = new QWidget(this);
    auto* layout = new QVBoxLayout(monitor);
    layout->setContentsMargins(8, 0, 0, 0);

    // The numbers one glances at: latest values, in a row of tiles.
    auto* tiles = new QFrame(monitor);
    tiles->setObjectName(QStringLiteral("tiles"));
    tiles->setStyleSheet(QStringLiteral("QFrame#tiles { background: white; border: 1px solid #dde1e7; border-radius: 8px; }"));
    auto* tileRow = new QHBoxLayout(tiles);
    tileRow->setContentsMargins(14, 8, 14, 8);
    const QString captions[TileCount] = {tr("step"), tr("train loss"), tr("validation loss"),
                                         tr("tokens / s"), tr("MFU"), tr("training time")};
    for (int i = 0; i < TileCount; ++i) {
        auto* cell = new QVBoxLayout;
        cell->setSpacing(0);
        auto* value = new ValueLabel(QStringLiteral("00.000 K"), tiles);
        value->setObjectName(QStringLiteral("tile%1").arg(i));
        QFont big = value->font();
        big.setPointSizeF(15);
        big.setWeight(QFont::DemiBold);
        value->setFont(big);
        value->setColor(QColor(0x11, 0x18, 0x27));
        value->setText(QStringLiteral("–"));
        auto* caption = new QLabel(captions[i], tiles);
        caption->setProperty("role", "caption");
        cell->addWidget(value);
        cell->addWidget(caption);
        tileRow->addLayout(cell);
        if (i + 1 < TileCount) tileRow->addStretch(1);
        m_tiles.push_back(value);
    }
    layout->addWidget(tiles);

    m_tabs = new QTabWidget(monitor);
    m_tabs->setObjectName(QStringLiteral("monitorTabs"));
    auto* chartsTab = new QWidget(m_tabs);
    auto* chartsLayout = new QVBoxLayout(chartsTab);
    chartsLayout->setContentsMargins(8, 8, 8, 8);
    m_controls = new ChartControls(chartsTab);
    chartsLayout->addWidget(m_controls);
    auto* grid = new QGridLayout;
    grid->setSpacing(8);
    for (const ChartSpec& spec : chartSpecs()) {
        auto* chart = new LiveChart(tr(spec.title), chartsTab);
        chart->setObjectName(QLatin1String(spec.objectName));
        if (spec.toolTip) chart->setToolTip(tr(spec.toolTip));
        Plot plot{chart, {}};
        for (const SeriesSpec& s : spec.series) {
            const MetricInfo& info = metric_info(s.metric);
            chart->addSeries(tr(s.legend), theme::series(s.color), info.record == MetricRecord::eval);
            plot.series.push_back(s.metric);
        }
        const MetricInfo& first = metric_info(spec.series.front().metric);
        if (first.style != MetricStyle::number)
            chart->setValueFormatter([&first](double v) { return formatMetric(first, v); });
        if (spec.series.front().metric == Metric::memory_bytes) {
            m_memoryChart = chart;
            m_estimateSeries = chart->addSeries(tr("estimate"), theme::series(spec.series.front().color));
            chart->setSeriesDashed(m_estimateSeries, true);
        }
        m_plots.push_back(std::move(plot));
    }
    const QList<LiveChart*> all = charts();
    for (int i = 0; i < all.size(); ++i) {
        all[i]->setPlaceholderText(tr("Press Start to train"));
        // On a CPU run the GUI shares the cores with the training threads:
        // the six charts together may take about one percent of one core (a
        // few frames a second each), which keeps them live and the trainer fast.
        all[i]->setMaxRedrawRate(10);
        all[i]->setRedrawBudget(0.002);
        m_controls->attach(all[i]);
        grid->addWidget(all[i], i / 2, i % 2);
    }
    // The six charts keep a readable height (axes included) and scroll
    // together when the window is short, rather than squeezing.
    auto* gridScroll = new QScrollArea(chartsTab);
    gridScroll->setObjectName(QStringLiteral("chartsScroll"));
    gridScroll->setFrameShape(QFrame::NoFrame);
    gridScroll->setWidgetResizable(true);
    gridScroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    auto* gridHost = new QWidget(gridScroll);
    gridHost->setLayout(grid);
    gridScroll->setWidget(gridHost);
    chartsLayout->addWidget(gridScroll, 1);
    m_tabs->addTab(chartsTab, tr("Charts"));

    m_samples = new QTextBrowser(m_tabs);
    m_samples->setObjectName(QStringLiteral("samplesView"));
    m_samples->setPlaceholderText(tr("Text samples appear here at each evaluation: watch the model learn to spell, "
                                     "then to write lines."));
    m_tabs->addTab(m_samples, tr("Samples"));
    m_log = new QPlainTextEdit(m_tabs);
    m_log->setObjectName(QStringLiteral("logView"));
    m_log->setReadOnly(true);
    m_log->setMaximumBlockCount(5000);
    QFont mono(QStringLiteral("DejaVu Sans Mono"));
    mono.setStyleHint(QFont::Monospace);
    mono.setPointSizeF(font().pointSizeF() - 0.5);
    m_log->setFont(mono);
    m_tabs->addTab(m_log, tr("Log"));
    layout->addWidget(m_tabs, 1);
    return monitor;
}

QList<LiveChart*> TrainPage::charts() const
{
    QList<LiveChart*> all;
    for (const Plot& p : m_plots) all.push_back(p.chart);
    return all;
}

QStringList TrainPage::blockingReasons() const
{
    QStringList reasons = m_context.config()->problems();
    const RunConfig& c = m_context.config()->config();
    const DeviceInventory* devices = m_context.devices();
    if (c.train.device == "cuda" && !devices->cudaAvailable())
        reasons << tr("CUDA is not available (%1); choose the CPU.")
                       .arg(devices->cudaProbed() ? devices->cudaUnavailableReason() : tr("still probing the GPU"));
    for (const auto& p : c.data.paths)
        if (!QFileInfo::exists(qs(p)))
            reasons << tr("The data path %1 does not exist: remove it on the Data page.").arg(qs(p));
    if (c.finetune && !c.finetune->base.empty()) {
        if (const BaseCheck base = checkBase(qs(c.finetune->base)); !base.ok)
            reasons << tr("The base model cannot be fine-tuned: %1 Choose another on the Model page.").arg(base.text);
    }
    const bool estimable = !c.finetune || c.finetune->lora.problems(c.model).empty();
    if (estimable && c.model.problems().empty() && c.train.batch_size >= 1 && c.train.resolved_seq_len(c.model) >= 2) {
        const int seq = c.train.resolved_seq_len(c.model);
        const DType compute = devices->computeFor(c.train.device);
        const size_t need = c.finetune ? estimate_finetune(c.model, *c.finetune, c.train.batch_size, seq, compute).total()
                                       : estimate_training_memory(c.model, c.train.batch_size, seq, compute).total();
        const MemoryInfo mem = devices->memoryFor(c.train.device);
        if (mem.free_bytes > 0 && need > mem.free_bytes)
            reasons << tr("This run needs about %1 but only %2 is free on %3: lower the batch size or sequence length, "
                          "use gradient accumulation, or choose a smaller model.")
                           .arg(formatBytes(double(need)), formatBytes(double(mem.free_bytes)),
                                devices->nameFor(c.train.device));
    }
    return reasons;
}

void TrainPage::updateControls()
{
    const TrainingController* training = m_context.training();
    const auto state = training->state();
    const bool active = training->isActive();
    const QStringList reasons = active ? QStringList() : blockingReasons();
    m_start->setEnabled(!active && reasons.isEmpty());
    m_start->setToolTip(reasons.isEmpty() ? tr("Start a new run with these settings") : reasons.join(QLatin1Char('\n')));
    m_pause->setEnabled(state == TrainingController::State::Running || state == TrainingController::State::Paused ||
                        state == TrainingController::State::Preparing);
    m_pause->setText(state == TrainingController::State::Paused ? tr("Resume") : tr("Pause"));
    m_stop->setEnabled(active && state != TrainingController::State::Stopping);
    m_settings->setEnabled(!active);
    if (reasons.isEmpty()) {
        m_blocked->hide();
    } else {
        QString html = QStringLiteral("<span style='color:%1'><b>%2</b></span><ul style='margin:0; -qt-list-indent:1;'>")
                           .arg(theme::danger().name(), tr("Start is disabled until these are fixed:"));
        for (const QString& r : reasons) html += QStringLiteral("<li>%1</li>").arg(r.toHtmlEscaped());
        m_blocked->setText(html + QStringLiteral("</ul>"));
        m_blocked->show();
    }
    if (state == TrainingController::State::Stopping)
        m_status->setText(tr("Stopping after this step and writing a checkpoint…"));
}

void TrainPage::start()
{
    if (m_context.training()->isActive() || !blockingReasons().isEmpty()) return;
    const RunConfig config = m_context.config()->config();
    const QString dir = newRunDir(m_context.runsDir(), config);
    m_context.setCurrentRun(dir);
    m_context.training()->start(config, dir, false, m_context.cacheDir());
}

void TrainPage::togglePause()
{
    TrainingController* training = m_context.training();
    if (training->state() == TrainingController::State::Paused) {
        training->resume();
        m_status->setText(tr("Resuming…"));
    } else {
        training->pause();
        m_pause->setEnabled(false);   // until the trainer reaches the end of its step
        m_status->setText(tr("Pausing after this step…"));
    }
}

void TrainPage::stop() { m_context.training()->stop(); }

void TrainPage::clearMonitor()
{
    for (LiveChart* chart : charts()) chart->clearData();
    for (ValueLabel* tile : m_tiles) tile->setText(QStringLiteral("–"));
    m_samples->clear();
    m_firstStep = m_lastStep = m_totalSteps = 0;
    m_statusStep = -1;
    m_latest = StepMetrics{};
    m_estimateShown = 0.0;
    m_numbersTimer.stop();
    m_lastElapsed = 0.0;
    m_firstElapsed = -1.0;
    m_firstLiveStep = 0;
    m_progress->setFormat(tr("no run"));
    m_progress->setRange(0, 1);
    m_progress->setValue(0);
    m_eta->setText(QString());
}

QString TrainPage::trainingStatus() const
{
    return tr("Training %1 on %2").arg(m_runName, qs(m_context.training()->runInfo().device));
}

void TrainPage::setTile(int tile, const QString& value) { m_tiles[tile]->setText(value); }

void TrainPage::loadHistory(const QString& runDir)
{
    const RunMetrics m = read_run_metrics(runDir.toStdString());
    for (const Plot& p : m_plots)
        for (size_t i = 0; i < p.series.size(); ++i)
            p.chart->append(int(i), metricSamples(metric_info(p.series[i]), m[p.series[i]]));
    for (const RunSample& s : m.samples) onSample(s.step, qs(s.prompt), QString::fromUtf8(s.text.data(), qsizetype(s.text.size())));
    if (!m.loss.empty()) {
        m_lastStep = int64_t(m.loss.step.back());
        m_lastElapsed = m.loss.time_s.back();
        setTile(TileStep, QLocale().toString(qlonglong(m_lastStep)));
        setTile(TileLoss, QString::number(m.loss.value.back(), 'f', 3));
        setTile(TileSpeed, formatRate(m.tokens_per_s.value.back()));
        const MetricInfo& mfu = metric_info(Metric::mfu);
        setTile(TileMfu, formatMetric(mfu, mfu.shown(m.mfu.value.back())));
        setTile(TileElapsed, formatDuration(m_lastElapsed));
    }
    if (!m.val_loss.empty()) setTile(TileValLoss, QString::number(m.val_loss.value.back(), 'f', 3));
}

void TrainPage::onRunStarting(const QString& runDir, bool resume)
{
    clearMonitor();
    m_banner->clear();
    m_runName = QFileInfo(runDir).fileName();
    if (resume) loadHistory(runDir);
    m_status->setText(resume ? tr("Resuming %1…").arg(m_runName) : tr("Preparing %1…").arg(m_runName));
    log(tr("%1 %2").arg(resume ? tr("resuming") : tr("starting"), runDir));
    updateControls();
}

void TrainPage::onStarted(const RunInfo& info)
{
    m_firstStep = info.start_step;
    m_totalSteps = info.total_steps;
    m_estimateShown = metric_info(Metric::memory_bytes).shown(double(info.estimated_memory_bytes));
    m_progress->setFormat(QStringLiteral("%v / %m"));
    m_progress->setRange(0, int(std::min<int64_t>(info.total_steps, INT32_MAX)));
    m_progress->setValue(int(info.start_step));
    m_status->setText(trainingStatus());
    log(tr("device %1 · %2 parameters · %3 per token · ~%4 memory")
            .arg(qs(info.device), formatCount(double(info.parameters)), formatFlops(info.flops_per_token),
                 formatBytes(double(info.estimated_memory_bytes))));
    log(tr("data: %1 training tokens, %2 validation tokens, %3 tokens per step")
            .arg(QLocale().toString(qlonglong(info.train_tokens)), QLocale().toString(qlonglong(info.val_tokens)),
                 QLocale().toString(qlonglong(info.tokens_per_step))));
}

void TrainPage::onSteps(const QVector<StepMetrics>& steps)
{
    if (steps.isEmpty()) return;
    // One append per series per batch: the charts redraw on their own timer.
    std::vector<ChartSample> samples;
    samples.reserve(size_t(steps.size()));
    for (const Plot& p : m_plots) {
        for (size_t i = 0; i < p.series.size(); ++i) {
            const MetricInfo& info = metric_info(p.series[i]);
            if (info.record != MetricRecord::step) continue;
            samples.clear();
            for (const StepMetrics& m : steps) samples.push_back(metricSample(info, m));
            p.chart->append(int(i), samples);
        }
    }
    if (m_estimateShown > 0.0) {
        samples.clear();
        for (const StepMetrics& m : steps) samples.push_back({double(m.step), m.elapsed_s, m_estimateShown});
        m_memoryChart->append(m_estimateSeries, samples);
    }

    if (m_firstElapsed < 0) {
        m_firstElapsed = steps.front().elapsed_s;
        m_firstLiveStep = steps.front().step;
    }
    m_latest = steps.back();
    m_lastStep = m_latest.step;
    m_lastElapsed = m_latest.elapsed_s;
    // The numbers are read, not watched: four refreshes a second are plenty,
    // and each one costs the trainer a little CPU on a CPU run.
    if (!m_numbersTimer.isActive()) m_numbersTimer.start();
}

void TrainPage::showLatestNumbers()
{
    const StepMetrics& last = m_latest;
    if (last.step <= 0) return;
    // Back from an evaluation or a pause (a step after the one it followed): say so.
    if (m_context.training()->state() == TrainingController::State::Running && last.step > m_statusStep)
        m_status->setText(trainingStatus());
    setTile(TileStep, QLocale().toString(qlonglong(last.step)));
    setTile(TileLoss, QString::number(last.loss, 'f', 3));
    setTile(TileSpeed, formatRate(last.tokens_per_s));
    const MetricInfo& mfu = metric_info(Metric::mfu);
    setTile(TileMfu, last.mfu > 0 ? formatMetric(mfu, mfu.shown(last.mfu)) : QStringLiteral("–"));
    setTile(TileElapsed, formatDuration(last.elapsed_s));
    m_progress->setValue(int(std::min<int64_t>(last.step, INT32_MAX)));

    // Remaining time from the pace of the steps seen live (training time only,
    // so evaluations and pauses do not distort it).
    if (last.step > m_firstLiveStep && m_totalSteps > last.step) {
        const double perStep = (last.elapsed_s - m_firstElapsed) / double(last.step - m_firstLiveStep);
        m_eta->setText(tr("%1 left").arg(formatDuration(perStep * double(m_totalSteps - last.step))));
    } else if (m_totalSteps <= last.step) {
        m_eta->setText(QString());
    }
}

void TrainPage::onEval(const EvalMetrics& e)
{
    // Evaluations sit at the training time of their step on a time axis.
    for (const Plot& p : m_plots)
        for (size_t i = 0; i < p.series.size(); ++i) {
            const MetricInfo& info = metric_info(p.series[i]);
            if (info.record == MetricRecord::eval)
                p.chart->append(int(i), double(e.step), m_lastElapsed, info.shown(metric_value(info.id, e)));
        }
    setTile(TileValLoss, QString::number(e.loss, 'f', 3));
    log(tr("step %1 · validation loss %2 · perplexity %3 · accuracy %4% · %5 bits/byte")
            .arg(e.step)
            .arg(e.loss, 0, 'f', 4)
            .arg(e.perplexity, 0, 'f', 2)
            .arg(100.0 * e.accuracy, 0, 'f', 1)
            .arg(e.bits_per_byte, 0, 'f', 3));
}

void TrainPage::onSample(qint64 step, const QString& prompt, const QString& text)
{
    const bool atBottom = m_samples->verticalScrollBar()->value() >= m_samples->verticalScrollBar()->maximum() - 4;
    QString shownPrompt = escapeControl(prompt);
    m_samples->append(QStringLiteral("<p style='margin-top:10px'><b>Step %1</b> "
                                     "<span style='color:#6b7280'>· prompt “%2”</span></p>"
                                     "<pre style='font-family:\"DejaVu Sans Mono\"; white-space:pre-wrap; "
                                     "background:#f8fafc; padding:6px'>%3%4</pre>")
                          .arg(step)
                          .arg(shownPrompt.toHtmlEscaped(), prompt.toHtmlEscaped(), text.toHtmlEscaped()));
    if (atBottom) m_samples->verticalScrollBar()->setValue(m_samples->verticalScrollBar()->maximum());
}

void TrainPage::onFinished(const RunSummary& s)
{
    m_eta->setText(QString());
    const QString where = m_context.training()->runDir();
    switch (s.outcome) {
    case RunOutcome::finished: {
        QString details = tr("%1 steps in %2.").arg(s.steps).arg(formatDuration(s.elapsed_s));
        if (s.has_eval)
            details += tr(" Validation loss %1 (perplexity %2, %3 bits per byte).")
                           .arg(s.last_eval.loss, 0, 'f', 4)
                           .arg(s.last_eval.perplexity, 0, 'f', 2)
                           .arg(s.last_eval.bits_per_byte, 0, 'f', 3);
        details += tr(" Saved in %1.").arg(where);
        m_banner->showMessage(MessageBanner::Kind::Success, tr("Training finished"), details);
        m_status->setText(tr("Finished %1").arg(m_runName));
        break;
    }
    case RunOutcome::stopped:
        m_banner->showMessage(MessageBanner::Kind::Info, tr("Stopped at step %1").arg(s.steps),
                              s.checkpoint.empty()
                                  ? tr("Nothing was trained yet, so no checkpoint was written.")
                                  : tr("A checkpoint is saved in %1. Resume the run from the Runs page.").arg(qs(s.checkpoint)));
        m_status->setText(tr("Stopped %1 at step %2").arg(m_runName).arg(s.steps));
        break;
    case RunOutcome::failed:
        m_banner->showMessage(MessageBanner::Kind::Error, tr("Training failed"), qs(s.error));
        m_status->setText(tr("Failed"));
        break;
    }
    log(tr("%1 after %2 steps").arg(s.outcome == RunOutcome::finished  ? tr("finished")
                                    : s.outcome == RunOutcome::stopped ? tr("stopped")
                                                                       : tr("failed: %1").arg(qs(s.error)))
            .arg(s.steps));
    m_context.notifyRunsChanged();
    updateControls();
}

void TrainPage::log(const QString& line)
{
    m_log->appendPlainText(QStringLiteral("%1  %2").arg(QTime::currentTime().toString(QStringLiteral("HH:mm:ss")), line));
}

} // namespace crucible::ui
