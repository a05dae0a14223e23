#include "ui/pages/runs_page.h"

#include "kernels/error.h"
#include "ui/app_context.h"
#include "ui/charts/chart_controls.h"
#include "ui/charts/live_chart.h"
#include "ui/charts/metric_samples.h"
#include "ui/format.h"
#include "ui/icons.h"
#include "ui/models/run_config_model.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/training_controller.h"

#include <QComboBox>
#include <QDateTime>
#include <QDesktopServices>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFileSystemWatcher>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QInputDialog>
#include <QLabel>
#include <QMenu>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QSplitter>
#include <QStackedWidget>
#include <QTextBrowser>
#include <QToolButton>
#include <QTreeWidget>
#include <QUrl>
#include <QVBoxLayout>

#include <cmath>
#include <filesystem>

namespace crucible::ui {

namespace {

enum Column { ColName, ColModel, ColOptimizer, ColSteps, ColLoss, ColValLoss, ColSpeed, ColStatus, ColModified, ColCount };
constexpr int kRootRole = Qt::UserRole;
constexpr int kSortRole = Qt::UserRole + 1;

// Sorts numbers as numbers and dates as dates, not as text.
class RunItem : public QTreeWidgetItem {
public:
    using QTreeWidgetItem::QTreeWidgetItem;
    bool operator<(const QTreeWidgetItem& other) const override
    {
        const int column = treeWidget() ? treeWidget()->sortColumn() : 0;
        const QVariant a = data(column, kSortRole), b = other.data(column, kSortRole);
        if (a.isValid() && b.isValid()) return a.toDouble() < b.toDouble();
        return text(column).localeAwareCompare(other.text(column)) < 0;
    }
};

QString statusText(const RunRecord& r, bool training)
{
    if (training) return QObject::tr("training");
    if (!r.config) return QObject::tr("unreadable");
    return QString::fromLatin1(to_string(r.status));
}

QColor statusColor(const RunRecord& r, bool training)
{
    if (training) return theme::accent();
    if (!r.config) return theme::danger();
    switch (r.status) {
    case RunStatus::finished: return theme::success();
    case RunStatus::stopped: return theme::warning();
    case RunStatus::failed: return theme::danger();
    case RunStatus::training: return theme::accent();
    case RunStatus::interrupted: return theme::warning();
    }
    return theme::mutedText();
}

QString canonical(const QString& path)
{
    const QString c = QFileInfo(path).canonicalFilePath();
    return c.isEmpty() ? QDir::cleanPath(path) : c;
}

} // namespace

RunsPage::RunsPage(AppContext& context, QWidget* parent)
    : QWidget(parent), m_context(context), m_watcher(new QFileSystemWatcher(this))
{
    m_extraFolders = QSettings().value(QStringLiteral("runs/extraFolders")).toStringList();

    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    addPageHeader(outer, tr("Runs"),
                  tr("Every run on disk. Tick runs to overlay them; open one to load its settings, or resume it."));
    outer->addWidget(buildToolbar());
    m_banner = new MessageBanner(this);
    m_banner->setObjectName(QStringLiteral("runsBanner"));
    outer->addWidget(m_banner);

    auto* vertical = new QSplitter(Qt::Vertical, this);
    vertical->setChildrenCollapsible(false);
    m_tableStack = new QStackedWidget(vertical);
    auto* empty = new QLabel(tr("<b>No runs yet.</b><br>Train one on the Train page, or add a folder that holds runs."),
                             m_tableStack);
    empty->setObjectName(QStringLiteral("runsEmptyState"));
    empty->setAlignment(Qt::AlignCenter);
    empty->setStyleSheet(QStringLiteral("QLabel { color: #6b7280; background: white; border: 1px solid #dde1e7; border-radius: 8px; }"));
    m_table = new QTreeWidget(m_tableStack);
    m_table->setObjectName(QStringLiteral("runsTable"));
    m_table->setRootIsDecorated(false);
    m_table->setStyleSheet(QStringLiteral("QTreeView::item { padding: 3px 0px; }"));
    m_table->setAlternatingRowColors(true);
    m_table->setUniformRowHeights(true);
    m_table->setSortingEnabled(true);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setEditTriggers(QAbstractItemView::EditKeyPressed);
    m_table->setHeaderLabels({tr("Run"), tr("Model"), tr("Optimizer"), tr("Steps"), tr("Train loss"), tr("Val loss"),
                              tr("Tokens/s"), tr("Status"), tr("Modified")});
    m_table->header()->setSectionResizeMode(QHeaderView::ResizeToContents);
    m_table->header()->setSectionResizeMode(ColName, QHeaderView::Stretch);
    m_table->headerItem()->setToolTip(ColName, tr("Tick to overlay on the chart below; F2 renames"));
    m_table->sortByColumn(ColModified, Qt::DescendingOrder);
    m_tableStack->addWidget(empty);
    m_tableStack->addWidget(m_table);
    vertical->addWidget(m_tableStack);

    auto* lower = new QSplitter(Qt::Horizontal, vertical);
    lower->setChildrenCollapsible(false);
    m_details = new QTextBrowser(lower);
    m_details->setObjectName(QStringLiteral("runDetails"));
    m_details->setOpenExternalLinks(false);
    m_details->setPlaceholderText(tr("Select a run to see its configuration and results."));
    m_details->setMinimumWidth(240);
    auto* compare = new QWidget(lower);
    auto* c = new QVBoxLayout(compare);
    c->setContentsMargins(0, 0, 0, 0);
    auto* compareBar = new QHBoxLayout;
    m_metric = new QComboBox(compare);
    m_metric->setObjectName(QStringLiteral("compareMetric"));
    for (const MetricInfo& m : metrics()) {
        const QString label = tr(m.label.data());
        m_metric->addItem(m.unit.empty() ? label : tr("%1 (%2)").arg(label, QLatin1String(m.unit.data())),
                          QLatin1String(m.key.data()));
    }
    // Sized for the usual names, not the longest: the bar must fit 1280 pixels.
    m_metric->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_metric->setMinimumContentsLength(16);
    m_controls = new ChartControls(compare);
    auto* exportPng = new QPushButton(tr("Export PNG…"), compare);
    auto* exportCsv = new QPushButton(tr("Export CSV…"), compare);
    compareBar->addWidget(new QLabel(tr("Compare"), compare));
    compareBar->addWidget(m_metric);
    compareBar->addSpacing(10);
    compareBar->addWidget(m_controls, 1);
    compareBar->addWidget(exportPng);
    compareBar->addWidget(exportCsv);
    c->addLayout(compareBar);
    m_chart = new LiveChart(tr("Train loss"), compare);
    m_chart->setObjectName(QStringLiteral("compareChart"));
    m_chart->setPlaceholderText(tr("Tick runs in the table to overlay them here"));
    m_controls->attach(m_chart);
    c->addWidget(m_chart, 1);
    m_compareHint = makeNote(QString(), compare);
    c->addWidget(m_compareHint);
    lower->addWidget(m_details);
    lower->addWidget(compare);
    lower->setStretchFactor(0, 2);
    lower->setStretchFactor(1, 3);
    lower->setSizes({420, 700});
    vertical->addWidget(lower);
    vertical->setStretchFactor(0, 1);
    vertical->setStretchFactor(1, 3);
    vertical->setSizes({220, 600});
    outer->addWidget(vertical, 1);

    connect(m_table, &QTreeWidget::itemSelectionChanged, this, [this] {
        updateButtons();
        updateDetails();
    });
    connect(m_table, &QTreeWidget::itemChanged, this, &RunsPage::onItemChanged);
    connect(m_table, &QTreeWidget::itemDoubleClicked, this, [this](QTreeWidgetItem*, int column) {
        if (column != ColName) openSelected();
    });
    connect(m_metric, &QComboBox::currentIndexChanged, this, &RunsPage::updateComparison);
    connect(exportPng, &QPushButton::clicked, m_chart, &LiveChart::saveAsPng);
    connect(exportCsv, &QPushButton::clicked, m_chart, &LiveChart::saveAsCsv);

    // Runs appear, grow and end while the page is open: refresh, debounced.
    m_refreshTimer.setSingleShot(true);
    m_refreshTimer.setInterval(400);
    // Hidden, the page waits: showEvent refreshes it. Reading every run's
    // metrics while a run trains would take time from the GUI for nothing.
    connect(&m_refreshTimer, &QTimer::timeout, this, [this] {
        if (isVisible()) refresh();
    });
    connect(m_watcher, &QFileSystemWatcher::directoryChanged, this, [this] { m_refreshTimer.start(); });
    connect(&context, &AppContext::runsChanged, this, [this] { m_refreshTimer.start(); });
    connect(&context, &AppContext::runsDirChanged, this, [this] { m_refreshTimer.start(); });
    connect(context.training(), &TrainingController::stateChanged, this, [this] { m_refreshTimer.start(); });
    connect(&m_scanner, &RunScanner::finished, this, &RunsPage::populate);
    refresh();
}

QWidget* RunsPage::buildToolbar()
{
    auto* bar = new QWidget(this);
    auto* row = new QHBoxLayout(bar);
    row->setContentsMargins(0, 0, 0, 0);
    auto* refreshButton = new QPushButton(icons::glyph(QStringLiteral("refresh"), theme::text()), tr("Refresh"), bar);
    refreshButton->setObjectName(QStringLiteral("refreshRunsButton"));
    m_folderButton = new QToolButton(bar);
    m_folderButton->setObjectName(QStringLiteral("runFoldersButton"));
    m_folderButton->setText(tr("Folders"));
    m_folderButton->setIcon(icons::glyph(QStringLiteral("folder"), theme::text()));
    m_folderButton->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    m_folderButton->setPopupMode(QToolButton::InstantPopup);
    m_folderButton->setMenu(new QMenu(m_folderButton));
    m_open = new QPushButton(tr("Open"), bar);
    m_open->setObjectName(QStringLiteral("openRunButton"));
    m_open->setToolTip(tr("Load this run's settings into the Model, Data and Train pages and show its charts"));
    m_resume = new QPushButton(tr("Resume"), bar);
    m_resume->setObjectName(QStringLiteral("resumeRunButton"));
    m_resume->setToolTip(tr("Continue training from the latest checkpoint"));
    m_rename = new QPushButton(tr("Rename"), bar);
    m_rename->setObjectName(QStringLiteral("renameRunButton"));
    m_delete = new QPushButton(tr("Delete"), bar);
    m_delete->setObjectName(QStringLiteral("deleteRunButton"));
    m_foldersLabel = makeNote(QString(), bar);
    row->addWidget(refreshButton);
    row->addWidget(m_folderButton);
    row->addSpacing(12);
    row->addWidget(m_open);
    row->addWidget(m_resume);
    row->addWidget(m_rename);
    row->addWidget(m_delete);
    row->addSpacing(12);
    row->addWidget(m_foldersLabel, 1);
    connect(refreshButton, &QPushButton::clicked, this, &RunsPage::refresh);
    connect(m_open, &QPushButton::clicked, this, &RunsPage::openSelected);
    connect(m_resume, &QPushButton::clicked, this, &RunsPage::resumeSelected);
    connect(m_rename, &QPushButton::clicked, this, &RunsPage::renameSelected);
    connect(m_delete, &QPushButton::clicked, this, &RunsPage::deleteSelected);
    rebuildFolderMenu();
    return bar;
}

void RunsPage::rebuildFolderMenu()
{
    QMenu* menu = m_folderButton->menu();
    menu->clear();
    menu->addAction(tr("Add a folder of runs…"), this, [this] {
        QSettings settings;
        const QString dir = QFileDialog::getExistingDirectory(
            this, tr("Add a folder of runs"), settings.value(QStringLiteral("runs/lastDir"), QDir::homePath()).toString());
        if (dir.isEmpty()) return;
        settings.setValue(QStringLiteral("runs/lastDir"), dir);
        addFolder(dir);
    });
    menu->addAction(tr("Show the runs folder"), this,
                    [this] { QDesktopServices::openUrl(QUrl::fromLocalFile(m_context.runsDir())); });
    if (!m_extraFolders.isEmpty()) menu->addSeparator();
    for (const QString& folder : m_extraFolders) {
        menu->addAction(tr("Forget %1").arg(folder), this, [this, folder] {
            m_extraFolders.removeAll(folder);
            QSettings().setValue(QStringLiteral("runs/extraFolders"), m_extraFolders);
            rebuildFolderMenu();
            refresh();
        });
    }
}

QStringList RunsPage::folders() const
{
    QStringList all{m_context.runsDir()};
    for (const QString& f : m_extraFolders)
        if (!all.contains(f)) all << f;
    return all;
}

void RunsPage::addFolder(const QString& folder)
{
    const QString clean = QDir::cleanPath(folder);
    if (!m_extraFolders.contains(clean) && clean != m_context.runsDir()) {
        m_extraFolders << clean;
        QSettings().setValue(QStringLiteral("runs/extraFolders"), m_extraFolders);
        rebuildFolderMenu();
    }
    refresh();
}

void RunsPage::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    refresh();
}

bool RunsPage::isTraining(const QString& root) const
{
    const TrainingController* t = m_context.training();
    return t->isActive() && canonical(t->runDir()) == canonical(root);
}

void RunsPage::refresh()
{
    m_refreshTimer.stop();
    QStringList watched;
    for (const QString& folder : folders())
        if (QFileInfo(folder).isDir()) watched << folder;
    if (!m_watcher->directories().isEmpty()) m_watcher->removePaths(m_watcher->directories());
    if (!watched.isEmpty()) m_watcher->addPaths(watched);
    m_scanner.scan(folders());
}

void RunsPage::populate()
{
    // Keep what the user ticked and selected across the rebuild.
    QStringList checked;
    for (int i = 0; i < m_table->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_table->topLevelItem(i);
        if (item->checkState(ColName) == Qt::Checked) checked << item->data(ColName, kRootRole).toString();
    }
    const QTreeWidgetItem* current = m_table->currentItem();
    const QString selected = current ? current->data(ColName, kRootRole).toString() : QString();

    m_records = m_scanner.runs();

    m_populating = true;
    m_table->setSortingEnabled(false);
    m_table->clear();
    const QLocale locale;
    for (const RunRecord& r : m_records) {
        const QString root = qs(r.root.string());
        const bool training = isTraining(root);
        auto* item = new RunItem(m_table);
        item->setData(ColName, kRootRole, root);
        item->setText(ColName, qs(r.name));
        item->setToolTip(ColName, root);
        item->setFlags(item->flags() | Qt::ItemIsUserCheckable | Qt::ItemIsEditable);
        item->setCheckState(ColName, checked.contains(root) ? Qt::Checked : Qt::Unchecked);
        if (r.config) {
            const ModelConfig& m = r.config->model;
            item->setText(ColModel, QStringLiteral("%1 · %2").arg(qs(m.name), formatCount(double(count_params(m).total()))));
            item->setData(ColModel, kSortRole, double(count_params(m).total()));
            item->setText(ColOptimizer, r.config->train.optimizer.type == OptimizerType::muon ? QStringLiteral("Muon")
                                                                                               : QStringLiteral("AdamW"));
        }
        item->setText(ColSteps, QStringLiteral("%1 / %2").arg(locale.toString(qlonglong(r.steps_done)),
                                                             locale.toString(qlonglong(r.total_steps))));
        item->setData(ColSteps, kSortRole, double(r.steps_done));
        if (r.final_loss) {
            item->setText(ColLoss, QString::number(*r.final_loss, 'f', 4));
            item->setData(ColLoss, kSortRole, *r.final_loss);
        }
        if (r.last_eval) {
            item->setText(ColValLoss, QString::number(r.last_eval->loss, 'f', 4));
            item->setData(ColValLoss, kSortRole, r.last_eval->loss);
        }
        if (r.tokens_per_s > 0) {
            item->setText(ColSpeed, formatRate(r.tokens_per_s));
            item->setData(ColSpeed, kSortRole, r.tokens_per_s);
        }
        item->setText(ColStatus, statusText(r, training));
        item->setForeground(ColStatus, statusColor(r, training));
        if (!r.error.empty()) item->setToolTip(ColStatus, qs(r.error));
        if (!r.problem.empty()) item->setToolTip(ColStatus, qs(r.problem));
        item->setText(ColModified, QDateTime::fromSecsSinceEpoch(r.modified_unix).toString(QStringLiteral("yyyy-MM-dd HH:mm")));
        item->setData(ColModified, kSortRole, double(r.modified_unix));
        for (int col = ColSteps; col <= ColSpeed; ++col) item->setTextAlignment(col, Qt::AlignRight | Qt::AlignVCenter);
        if (root == selected) m_table->setCurrentItem(item);
    }
    m_table->setSortingEnabled(true);
    m_populating = false;
    m_tableStack->setCurrentIndex(m_records.empty() ? 0 : 1);
    const QString where = folders().join(QStringLiteral(", "));
    const int count = int(m_records.size());
    m_foldersLabel->setText(count == 1 ? tr("1 run in %1").arg(where) : tr("%1 runs in %2").arg(count).arg(where));
    updateButtons();
    updateDetails();
    updateComparison();
    emit refreshed();
}

QTreeWidgetItem* RunsPage::itemFor(const QString& root) const
{
    const QString want = canonical(root);
    for (int i = 0; i < m_table->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_table->topLevelItem(i);
        if (canonical(item->data(ColName, kRootRole).toString()) == want) return item;
    }
    return nullptr;
}

const RunRecord* RunsPage::recordFor(const QString& root) const
{
    for (const RunRecord& r : m_records)
        if (qs(r.root.string()) == root) return &r;
    return nullptr;
}

const RunRecord* RunsPage::selectedRecord() const
{
    const QTreeWidgetItem* item = m_table->currentItem();
    return item ? recordFor(item->data(ColName, kRootRole).toString()) : nullptr;
}

void RunsPage::updateButtons()
{
    const RunRecord* r = selectedRecord();
    // Trained here, or by another process (crucible-cli, a second window).
    const bool training = r && (isTraining(qs(r->root.string())) || r->status == RunStatus::training);
    const bool busy = m_context.training()->isActive();
    m_open->setEnabled(r && r->config && !busy);
    m_resume->setEnabled(r && r->resumable() && !busy && !training);
    m_resume->setToolTip(r && training        ? tr("This run is training now")
                         : r && !r->resumable() ? tr("This run has no checkpoint to resume from")
                         : r && r->status == RunStatus::interrupted
                             ? tr("Its trainer was killed or crashed: continue from the latest checkpoint")
                             : tr("Continue training from the latest checkpoint"));
    m_rename->setEnabled(r && !training);
    m_delete->setEnabled(r && !training);
}

void RunsPage::updateDetails()
{
    const RunRecord* r = selectedRecord();
    if (!r) {
        m_details->clear();
        return;
    }
    const QLocale locale;
    const bool training = isTraining(qs(r->root.string()));
    QString h = QStringLiteral("<h3 style='margin-bottom:2px'>%1</h3>").arg(qs(r->name).toHtmlEscaped());
    h += QStringLiteral("<p style='margin-top:0'><span style='color:%1'><b>%2</b></span> "
                        "<span style='color:#6b7280'>· %3</span></p>")
             .arg(statusColor(*r, training).name(), statusText(*r, training), qs(r->root.string()).toHtmlEscaped());
    if (!r->problem.empty()) h += QStringLiteral("<p style='color:#c62828'>%1</p>").arg(qs(r->problem).toHtmlEscaped());
    if (!r->error.empty()) h += QStringLiteral("<p style='color:#c62828'>%1</p>").arg(qs(r->error).toHtmlEscaped());
    h += QStringLiteral("<table cellspacing='0' cellpadding='2'>");
    auto row = [&](const QString& k, const QString& v) {
        h += QStringLiteral("<tr><td style='color:#6b7280; padding-right:10px'>%1</td><td>%2</td></tr>").arg(k, v);
    };
    if (r->config) {
        const ModelConfig& m = r->config->model;
        const TrainConfig& t = r->config->train;
        const OptimizerConfig& o = t.optimizer;
        row(tr("Model"), tr("%1 · %2 parameters").arg(qs(m.name), formatCount(double(count_params(m).total()))));
        row(QString(), tr("vocab %1, d %2, %3 layers, %4/%5 heads, MLP %6, context %7")
                           .arg(m.vocab_size).arg(m.d_model).arg(m.n_layers).arg(m.n_heads).arg(m.n_kv_heads)
                           .arg(m.ff_dim).arg(m.seq_len));
        row(QString(), QStringLiteral("%1, %2%3%4")
                           .arg(QLatin1String(to_string(m.norm)), QLatin1String(to_string(m.mlp)),
                                m.qk_norm ? QStringLiteral(", QK-norm") : QString(),
                                m.tied_embeddings ? tr(", tied head") : tr(", untied head")));
        row(tr("Optimizer"),
            o.type == OptimizerType::muon
                ? tr("Muon lr %1 (momentum %2) + AdamW lr %3, weight decay %4")
                      .arg(formatNumber(o.muon_lr), formatNumber(o.muon_momentum), formatNumber(o.lr),
                           formatNumber(o.weight_decay))
                : tr("AdamW lr %1, β %2/%3, weight decay %4")
                      .arg(formatNumber(o.lr), formatNumber(o.beta1), formatNumber(o.beta2), formatNumber(o.weight_decay)));
        row(tr("Schedule"), tr("%1, warmup %2, floor %3")
                                .arg(QLatin1String(to_string(t.schedule.kind)))
                                .arg(t.schedule.warmup_steps)
                                .arg(formatNumber(t.schedule.min_lr_ratio)));
        row(tr("Batch"), tr("%1 × %2 × %3 tokens per step").arg(t.batch_size).arg(t.grad_accum).arg(t.resolved_seq_len(m)));
        row(tr("Data"), r->config->data.paths.empty()
                            ? tr("Tiny Shakespeare (embedded)")
                            : r->config->data.paths.size() == 1 ? qs(r->config->data.paths.front())
                                                                : tr("%1 files and folders").arg(r->config->data.paths.size()));
        row(tr("Device"), r->device.empty() ? qs(t.device) : qs(r->device));
    }
    row(tr("Progress"), tr("%1 of %2 steps, %3 tokens in %4")
                            .arg(locale.toString(qlonglong(r->steps_done)), locale.toString(qlonglong(r->total_steps)),
                                 formatCount(double(r->tokens_seen)), formatDuration(r->elapsed_s)));
    if (r->tokens_per_s > 0) row(tr("Speed"), tr("%1 tokens/s on average").arg(formatRate(r->tokens_per_s)));
    if (r->final_loss) row(tr("Train loss"), QString::number(*r->final_loss, 'f', 4));
    if (r->last_eval)
        row(tr("Validation"), tr("loss %1, perplexity %2, accuracy %3%, %4 bits/byte (step %5)")
                                  .arg(r->last_eval->loss, 0, 'f', 4)
                                  .arg(r->last_eval->perplexity, 0, 'f', 2)
                                  .arg(100.0 * r->last_eval->accuracy, 0, 'f', 1)
                                  .arg(r->last_eval->bits_per_byte, 0, 'f', 3)
                                  .arg(r->last_eval->step));
    QStringList cps;
    for (int64_t s : r->checkpoints) cps << QString::number(s);
    row(tr("Checkpoints"), cps.isEmpty() ? tr("none") : tr("steps %1").arg(cps.join(QStringLiteral(", "))));
    h += QStringLiteral("</table>");
    m_details->setHtml(h);
}

void RunsPage::updateComparison()
{
    const QString key = m_metric->currentData().toString();
    const MetricInfo* metric = find_metric(key.toStdString());
    if (!metric) return;
    m_chart->removeAllSeries();
    m_chart->setTitle(m_metric->currentText());
    int index = 0, shown = 0;
    QStringList empty;
    for (int i = 0; i < m_table->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_table->topLevelItem(i);
        if (item->checkState(ColName) != Qt::Checked) continue;
        const QString root = item->data(ColName, kRootRole).toString();
        const QFileInfo metricsFile(QDir(root).filePath(QStringLiteral("metrics.jsonl")));
        const qint64 stamp = metricsFile.lastModified().toMSecsSinceEpoch() ^ metricsFile.size();
        auto it = m_metricsCache.find(root);
        if (it == m_metricsCache.end() || it->stamp != stamp)
            it = m_metricsCache.insert(root, CachedMetrics{stamp, read_run_metrics(root.toStdString())});
        const MetricSeries& s = it->metrics[metric->id];
        const int series = m_chart->addSeries(item->text(ColName), theme::series(index++),
                                              metric->record == MetricRecord::eval);
        if (s.empty()) {
            empty << item->text(ColName);
            continue;
        }
        m_chart->append(series, metricSamples(*metric, s));
        ++shown;
    }
    m_chart->setValueFormatter([metric](double v) { return formatMetric(*metric, v); });
    QString hint = shown == 0 ? tr("Tick two or more runs to compare them.")
                   : shown == 1 ? tr("1 run shown; tick another to compare. Drag across the chart to zoom, double-click to zoom out.")
                                : tr("%1 runs overlaid. Drag across the chart to zoom; double-click to zoom out.").arg(shown);
    if (!empty.isEmpty()) hint += QLatin1Char(' ') + tr("No %1 recorded for %2.").arg(tr(metric->label.data()).toLower(), empty.join(QStringLiteral(", ")));
    m_compareHint->setText(hint);
}

void RunsPage::onItemChanged(QTreeWidgetItem* item, int column)
{
    if (m_populating || column != ColName) return;
    const QString root = item->data(ColName, kRootRole).toString();
    const QString oldName = QFileInfo(root).fileName();
    const QString newName = item->text(ColName).trimmed();
    if (newName != oldName) {
        m_populating = true;
        item->setText(ColName, oldName);   // shown again if the rename fails; refresh shows the new one
        m_populating = false;
        if (isTraining(root)) {
            m_banner->showMessage(MessageBanner::Kind::Warning, tr("Cannot rename a run while it trains"),
                                  tr("Stop it first, or rename it when it has finished."));
            return;
        }
        try {
            const auto renamed = rename_run(root.toStdString(), newName.toStdString());
            if (m_context.currentRun() == root) m_context.setCurrentRun(qs(renamed.string()));
            m_metricsCache.remove(root);
            m_banner->clear();
            m_populating = true;
            item->setData(ColName, kRootRole, qs(renamed.string()));
            m_populating = false;
            // Not from inside the table's own signal: refresh() rebuilds its items.
            QTimer::singleShot(0, this, &RunsPage::refresh);
        } catch (const Error& e) {
            m_banner->showMessage(MessageBanner::Kind::Error, tr("The run was not renamed"), QString::fromUtf8(e.what()));
        }
        return;
    }
    updateComparison();   // a tick changed
}

void RunsPage::openSelected()
{
    const RunRecord* r = selectedRecord();
    if (!r) return;
    QString error;
    if (!m_context.openRun(qs(r->root.string()), &error)) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("The run could not be opened"), error);
        return;
    }
    m_banner->showMessage(MessageBanner::Kind::Info, tr("Opened %1").arg(qs(r->name)),
                          tr("Its settings are now on the Model, Data and Train pages; Start trains a new run with them."));
    m_context.requestPage(QStringLiteral("Train"));
}

void RunsPage::resumeSelected()
{
    const RunRecord* r = selectedRecord();
    if (!r || !r->resumable() || m_context.training()->isActive()) return;
    RunConfig config = *r->config;
    const QString root = qs(r->root.string());
    if (r->steps_done >= r->total_steps) {
        bool ok = false;
        const int steps = QInputDialog::getInt(this, tr("Train further"),
                                               tr("%1 finished its %2 steps. Train it up to step:").arg(qs(r->name)).arg(r->total_steps),
                                               int(std::min<int64_t>(r->total_steps * 2, INT32_MAX)),
                                               int(r->total_steps + 1), INT32_MAX, 100, &ok);
        if (!ok) return;
        config.train.steps = steps;
    }
    m_context.config()->setConfig(config);
    m_context.setCurrentRun(root);
    m_context.training()->start(config, root, true, m_context.cacheDir());
    m_context.requestPage(QStringLiteral("Train"));
}

void RunsPage::renameSelected()
{
    QTreeWidgetItem* item = m_table->currentItem();
    if (item) m_table->editItem(item, ColName);
}

void RunsPage::deleteSelected()
{
    const RunRecord* r = selectedRecord();
    if (!r) return;
    const QString root = qs(r->root.string());
    if (isTraining(root)) return;
    const auto answer = QMessageBox::question(
        this, tr("Delete run"),
        tr("Delete the run “%1”?\n\nIts folder, %2 checkpoint(s) and metrics will be removed from disk:\n%3\n\n"
           "This cannot be undone.")
            .arg(qs(r->name))
            .arg(r->checkpoints.size())
            .arg(root),
        QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel);
    if (answer != QMessageBox::Yes) return;
    try {
        delete_run(root.toStdString());
        m_metricsCache.remove(root);
        // The row goes now; the scan that follows confirms it.
        const QString name = qs(r->name);
        std::erase_if(m_records, [&](const RunRecord& x) { return qs(x.root.string()) == root; });
        delete itemFor(root);
        m_banner->showMessage(MessageBanner::Kind::Info, tr("Deleted %1").arg(name));
        if (m_context.currentRun() == root) m_context.setCurrentRun(QString());
    } catch (const Error& e) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("The run was not deleted"), QString::fromUtf8(e.what()));
    }
    refresh();
}

} // namespace crucible::ui
