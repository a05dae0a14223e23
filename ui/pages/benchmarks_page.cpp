#include "ui/pages/benchmarks_page.h"

#include "kernels/error.h"
#include "ui/app_context.h"
#include "ui/charts/live_chart.h"
#include "ui/format.h"
#include "ui/models/device_inventory.h"
#include "ui/pages/benchmark_charts.h"
#include "ui/pages/claims_view.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/benchmark_controller.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QTabWidget>
#include <QTableWidget>
#include <QTime>
#include <QTreeWidget>
#include <QVBoxLayout>

namespace crucible::ui {

namespace {

enum SuiteColumn { SuiteName, SuiteProgress };
constexpr int kProgressSteps = 1000;

QString tagText(const std::map<std::string, std::string>& tags)
{
    QStringList parts;
    for (const auto& [k, v] : tags) parts << QStringLiteral("%1=%2").arg(qs(k), qs(v));
    return parts.join(QLatin1Char(' '));
}

QTableWidgetItem* numberItem(double v)
{
    auto* item = new QTableWidgetItem(formatNumber(v));
    item->setData(Qt::UserRole, v);
    item->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
    return item;
}

} // namespace

BenchmarksPage::BenchmarksPage(AppContext& context, QWidget* parent)
    : QWidget(parent), m_context(context), m_controller(new BenchmarkController(this))
{
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    addPageHeader(outer, tr("Benchmarks"),
                  tr("Each claim measured on this machine, plotted live against the hardware's limit and PyTorch."));
    outer->addWidget(buildControls());
    m_banner = new MessageBanner(this);
    m_banner->setObjectName(QStringLiteral("benchBanner"));
    outer->addWidget(m_banner);

    auto* splitter = new QSplitter(Qt::Horizontal, this);
    splitter->setChildrenCollapsible(false);
    splitter->addWidget(buildSuiteList());

    m_tabs = new QTabWidget(splitter);
    m_tabs->setObjectName(QStringLiteral("benchTabs"));
    m_charts = new BenchmarkCharts(m_tabs);
    m_tabs->addTab(m_charts, tr("Charts"));
    m_claims = new ClaimsView(m_tabs);
    m_tabs->addTab(m_claims, tr("Claims"));
    m_table = new QTableWidget(m_tabs);
    m_table->setObjectName(QStringLiteral("benchResultsTable"));
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->verticalHeader()->hide();
    m_table->setSortingEnabled(true);
    m_tabs->addTab(m_table, tr("Results"));
    m_log = new QPlainTextEdit(m_tabs);
    m_log->setObjectName(QStringLiteral("benchLog"));
    m_log->setReadOnly(true);
    m_log->setMaximumBlockCount(5000);
    m_tabs->addTab(m_log, tr("Log"));
    splitter->addWidget(m_tabs);
    splitter->setStretchFactor(0, 0);
    splitter->setStretchFactor(1, 1);
    splitter->setSizes({300, 1000});
    outer->addWidget(splitter, 1);

    connect(m_claims, &ClaimsView::chartRequested, this, &BenchmarksPage::showChartFor);
    connect(m_tabs, &QTabWidget::currentChanged, this, [this] {
        if (m_tabs->currentWidget() == m_table) fillResultsTable();
    });
    connect(m_charts, &BenchmarkCharts::currentChartChanged, this, &BenchmarksPage::updateControls);
    connect(m_controller, &BenchmarkController::runningChanged, this, &BenchmarksPage::updateControls);
    connect(m_controller, &BenchmarkController::machineReady, this, [this](const bench::MachineFacts& m) {
        m_results.machine = m;
        m_charts->setMachine(m);
        log(tr("device %1 · limits: %2 TFLOP/s, %3 GB/s (%4)")
                .arg(qs(m.device), formatNumber(m.peak_tflops), formatNumber(m.bandwidth_gbs), qs(m.limits_source)));
    });
    connect(m_controller, &BenchmarkController::suiteStarted, this, [this](const QString& suite, const QString& device) {
        if (QProgressBar* bar = progressFor(suite)) {
            bar->setValue(0);
            bar->setFormat(QStringLiteral("%p%"));
        }
        log(tr("%1 on %2").arg(suite, device));
    });
    connect(m_controller, &BenchmarkController::rowsReceived, this, &BenchmarksPage::onRows);
    connect(m_controller, &BenchmarkController::progressed, this,
            [this](const QString& suite, double fraction, const QString& what) {
                if (QProgressBar* bar = progressFor(suite)) bar->setValue(int(fraction * kProgressSteps));
                if (!m_controller->isStopping()) m_status->setText(QStringLiteral("%1: %2").arg(suite, what));
            });
    connect(m_controller, &BenchmarkController::noted, this, [this](const QString& suite, const QString& text) {
        m_results.notes.push_back(text.toStdString());
        log(suite.isEmpty() ? text : QStringLiteral("%1: %2").arg(suite, text));
    });
    connect(m_controller, &BenchmarkController::suiteFinished, this, &BenchmarksPage::onSuiteFinished);
    connect(m_controller, &BenchmarkController::finished, this, &BenchmarksPage::onFinished);
    connect(context.devices(), &DeviceInventory::changed, this, [this] {
        const QString chosen = m_device->currentData().toString();
        m_device->clear();
        m_device->addItem(tr("CPU"), QStringLiteral("cpu"));
        if (m_context.devices()->cudaAvailable()) m_device->addItem(tr("CUDA GPU"), QStringLiteral("cuda"));
        selectData(m_device, chosen);
    });
    showResults();
    updateControls();
}

BenchmarksPage::~BenchmarksPage() = default;

QWidget* BenchmarksPage::buildControls()
{
    auto* bar = new QWidget(this);
    auto* row = new QHBoxLayout(bar);
    row->setContentsMargins(0, 0, 0, 4);
    m_run = new QPushButton(tr("Run"), bar);
    m_run->setObjectName(QStringLiteral("benchRunButton"));
    m_run->setProperty("primary", true);
    m_run->setMinimumWidth(80);
    m_stopButton = new QPushButton(tr("Stop"), bar);
    m_stopButton->setObjectName(QStringLiteral("benchStopButton"));
    m_stopButton->setToolTip(tr("Stop within the current measurement; what was measured is kept and saved"));
    m_device = new QComboBox(bar);
    m_device->setObjectName(QStringLiteral("benchDevice"));
    m_device->addItem(tr("CPU"), QStringLiteral("cpu"));
    if (m_context.devices()->cudaAvailable()) {
        m_device->addItem(tr("CUDA GPU"), QStringLiteral("cuda"));
        m_device->setCurrentIndex(1);
    }
    m_size = new QComboBox(bar);
    m_size->setObjectName(QStringLiteral("benchSize"));
    m_size->addItem(tr("Sizes for this device"), QString::fromLatin1(bench::to_string(bench::SizeClass::standard)));
    m_size->addItem(tr("Tiny (a quick look)"), QString::fromLatin1(bench::to_string(bench::SizeClass::tiny)));
    m_size->setToolTip(tr("Standard sizes are chosen for the device and its memory; tiny ones finish in seconds"));
    m_peer = new QCheckBox(tr("PyTorch peer"), bar);
    m_peer->setObjectName(QStringLiteral("benchPeer"));
    m_peer->setToolTip(tr("Also run the same measurement in PyTorch, where a suite has one (needs Python with torch)"));
    m_open = new QPushButton(tr("Open…"), bar);
    m_open->setObjectName(QStringLiteral("benchOpenButton"));
    m_open->setToolTip(tr("Open a saved results file (.jsonl), from this machine or another"));
    m_compare = new QPushButton(tr("Compare…"), bar);
    m_compare->setObjectName(QStringLiteral("benchCompareButton"));
    m_compare->setToolTip(tr("Overlay a second results file: its lines join the charts and the Results tab "
                             "shows the ratio of every point"));
    m_exportPng = new QPushButton(tr("PNG…"), bar);
    m_exportPng->setToolTip(tr("Save the chart on screen as a PNG image"));
    m_exportCsv = new QPushButton(tr("CSV…"), bar);
    m_exportCsv->setToolTip(tr("Save the numbers of the chart on screen as CSV"));
    m_status = new QLabel(tr("Ready"), bar);
    m_status->setObjectName(QStringLiteral("benchStatus"));
    m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_status->setMinimumWidth(120);
    m_status->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);

    row->addWidget(m_run);
    row->addWidget(m_stopButton);
    row->addWidget(m_device);
    row->addWidget(m_size);
    row->addWidget(m_peer);
    row->addWidget(m_status, 1);
    row->addWidget(m_open);
    row->addWidget(m_compare);
    row->addWidget(m_exportPng);
    row->addWidget(m_exportCsv);

    connect(m_run, &QPushButton::clicked, this, &BenchmarksPage::run);
    connect(m_stopButton, &QPushButton::clicked, this, &BenchmarksPage::stop);
    connect(m_device, &QComboBox::currentIndexChanged, this, &BenchmarksPage::refillSuites);
    connect(m_open, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Open benchmark results"),
                                                          qs(bench::default_results_dir().string()),
                                                          tr("Benchmark results (*.jsonl);;All files (*)"));
        if (!path.isEmpty()) openResults(path);
    });
    connect(m_compare, &QPushButton::clicked, this, [this] {
        const QString path = QFileDialog::getOpenFileName(this, tr("Compare with results"),
                                                          qs(bench::default_results_dir().string()),
                                                          tr("Benchmark results (*.jsonl);;All files (*)"));
        if (!path.isEmpty()) compareWith(path);
    });
    connect(m_exportPng, &QPushButton::clicked, this, [this] {
        if (LiveChart* chart = m_charts->currentChart()) chart->saveAsPng();
    });
    connect(m_exportCsv, &QPushButton::clicked, this, [this] {
        if (LiveChart* chart = m_charts->currentChart()) chart->saveAsCsv();
    });
    return bar;
}

QWidget* BenchmarksPage::buildSuiteList()
{
    m_suites = new QTreeWidget(this);
    m_suites->setObjectName(QStringLiteral("benchSuites"));
    m_suites->setColumnCount(2);
    m_suites->setHeaderLabels({tr("Suite"), tr("Progress")});
    m_suites->setRootIsDecorated(false);
    m_suites->setMinimumWidth(260);
    m_suites->header()->setSectionResizeMode(SuiteName, QHeaderView::Stretch);
    m_suites->header()->setSectionResizeMode(SuiteProgress, QHeaderView::Fixed);
    m_suites->header()->setStretchLastSection(false);
    m_suites->header()->resizeSection(SuiteProgress, 96);
    for (const bench::SuiteInfo& s : bench::suites()) {
        auto* item = new QTreeWidgetItem(m_suites);
        item->setText(SuiteName, qs(s.id));
        item->setData(SuiteName, Qt::UserRole, qs(s.id));
        item->setToolTip(SuiteName, QStringLiteral("<b>%1</b><br>%2").arg(qs(s.title).toHtmlEscaped(),
                                                                          qs(s.measures).toHtmlEscaped()));
        item->setFlags(item->flags() | Qt::ItemIsUserCheckable);
        item->setCheckState(SuiteName, Qt::Checked);
        auto* bar = new QProgressBar(m_suites);
        bar->setObjectName(QStringLiteral("progress_%1").arg(qs(s.id)));
        bar->setRange(0, kProgressSteps);
        bar->setValue(0);
        bar->setFormat(QString());
        bar->setMaximumHeight(16);
        m_suites->setItemWidget(item, SuiteProgress, bar);
        m_progress[qs(s.id)] = bar;
    }
    refillSuites();

    auto* panel = new QWidget(this);
    auto* layout = new QVBoxLayout(panel);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(m_suites, 2);
    m_suiteAbout = new QLabel(panel);
    m_suiteAbout->setObjectName(QStringLiteral("benchSuiteAbout"));
    m_suiteAbout->setWordWrap(true);
    m_suiteAbout->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    m_suiteAbout->setTextFormat(Qt::RichText);
    m_suiteAbout->setContentsMargins(4, 6, 4, 0);
    layout->addWidget(m_suiteAbout, 1);
    connect(m_suites, &QTreeWidget::currentItemChanged, this, [this](QTreeWidgetItem* item) {
        const bench::SuiteInfo* s =
            item ? bench::find_suite(item->data(SuiteName, Qt::UserRole).toString().toStdString()) : nullptr;
        m_suiteAbout->setText(s ? QStringLiteral("<b>%1</b><br>%2").arg(qs(s->title).toHtmlEscaped(),
                                                                       qs(s->measures).toHtmlEscaped())
                                : QString());
    });
    m_suites->setCurrentItem(m_suites->topLevelItem(0));
    return panel;
}

void BenchmarksPage::refillSuites()
{
    const bool cuda = m_device->currentData().toString() == QLatin1String("cuda");
    for (int i = 0; i < m_suites->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_suites->topLevelItem(i);
        const bench::SuiteInfo* s = bench::find_suite(item->data(SuiteName, Qt::UserRole).toString().toStdString());
        const bool runs = s && (cuda ? s->cuda : s->cpu);
        item->setDisabled(!runs);
        item->setToolTip(SuiteProgress, runs ? QString() : tr("Not available on this device"));
    }
}

QProgressBar* BenchmarksPage::progressFor(const QString& suite) const
{
    const auto it = m_progress.find(suite);
    return it == m_progress.end() ? nullptr : it->second;
}

void BenchmarksPage::setSuiteChecked(const QString& suite, bool checked)
{
    for (int i = 0; i < m_suites->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_suites->topLevelItem(i);
        if (item->data(SuiteName, Qt::UserRole).toString() == suite)
            item->setCheckState(SuiteName, checked ? Qt::Checked : Qt::Unchecked);
    }
}

void BenchmarksPage::setSize(bench::SizeClass size) { selectData(m_size, QString::fromLatin1(bench::to_string(size))); }

void BenchmarksPage::updateControls()
{
    const bool running = m_controller->isRunning();
    m_run->setEnabled(!running);
    m_stopButton->setEnabled(running && !m_controller->isStopping());
    for (QWidget* w : {static_cast<QWidget*>(m_device), static_cast<QWidget*>(m_size), static_cast<QWidget*>(m_peer),
                       static_cast<QWidget*>(m_open), static_cast<QWidget*>(m_compare)})
        w->setEnabled(!running);
    m_suites->setEnabled(!running);
    const bool chart = m_charts->currentChart() != nullptr;
    m_exportPng->setEnabled(chart);
    m_exportCsv->setEnabled(chart);
}

void BenchmarksPage::log(const QString& line)
{
    m_log->appendPlainText(QStringLiteral("%1  %2").arg(QTime::currentTime().toString(QStringLiteral("HH:mm:ss")), line));
}

void BenchmarksPage::run()
{
    if (m_controller->isRunning()) return;
    BenchmarkRequest request;
    for (int i = 0; i < m_suites->topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = m_suites->topLevelItem(i);
        if (!item->isDisabled() && item->checkState(SuiteName) == Qt::Checked)
            request.suites << item->data(SuiteName, Qt::UserRole).toString();
    }
    if (request.suites.isEmpty()) {
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("No suite to run"),
                              tr("Tick at least one suite on the left that runs on this device."));
        return;
    }
    request.request.device = m_device->currentData().toString() == QLatin1String("cuda") ? DeviceKind::cuda
                                                                                          : DeviceKind::cpu;
    request.request.size =
        bench::size_class_from_string(m_size->currentData().toString().toStdString()).value_or(bench::SizeClass::standard);
    request.request.peer = m_peer->isChecked();
    request.request.options = m_options;

    m_banner->clear();
    m_charts->clear();
    m_compared.reset();
    m_comparedName.clear();
    m_results = bench::ResultsFile{};
    m_results.started = bench::utc_now_iso();
    try {
        m_resultsPath = qs(bench::new_results_path(request.suites.join(QLatin1Char('+')).toStdString()).string());
    } catch (const std::exception& e) {
        m_resultsPath.clear();
        log(tr("results will not be saved: %1").arg(QString::fromUtf8(e.what())));
    }
    for (auto& [id, bar] : m_progress) {
        bar->setValue(0);
        bar->setFormat(request.suites.contains(id) ? tr("waiting") : QString());
    }
    m_claims->setRows(m_results.rows);
    showResults();
    m_status->setText(tr("Starting…"));
    log(tr("running %1").arg(request.suites.join(QStringLiteral(", "))));
    m_controller->start(request);
}

void BenchmarksPage::stop()
{
    if (!m_controller->isRunning()) return;
    m_controller->stop();
    m_status->setText(tr("Stopping after this measurement…"));
}

void BenchmarksPage::onRows(const QVector<bench::Row>& rows)
{
    const std::vector<bench::Row> batch(rows.begin(), rows.end());
    m_results.rows.insert(m_results.rows.end(), batch.begin(), batch.end());
    m_charts->addRows(batch);
    updateControls();
}

void BenchmarksPage::onSuiteFinished(const QString& suite, bench::Outcome outcome, const QString& message)
{
    if (QProgressBar* bar = progressFor(suite)) {
        if (outcome == bench::Outcome::completed) bar->setValue(kProgressSteps);
        bar->setFormat(outcome == bench::Outcome::completed ? tr("done")
                       : outcome == bench::Outcome::cancelled ? tr("stopped")
                                                              : tr("failed"));
    }
    if (outcome == bench::Outcome::failed) {
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("The %1 suite failed").arg(suite), message);
        log(tr("%1 failed: %2").arg(suite, message));
    } else {
        log(tr("%1 %2").arg(suite, QString::fromLatin1(bench::to_string(outcome))));
    }
    saveResults();
    m_claims->setRows(m_results.rows);
    showResults();
}

void BenchmarksPage::onFinished(bool cancelled)
{
    saveResults();
    const QString saved = m_resultsPath.isEmpty() ? QString() : tr(" · saved as %1").arg(QFileInfo(m_resultsPath).fileName());
    m_status->setText((cancelled ? tr("Stopped: %1 points").arg(m_results.rows.size())
                                 : tr("Done: %1 points").arg(m_results.rows.size())) +
                      saved);
    m_status->setToolTip(m_resultsPath);
    log(m_resultsPath.isEmpty() ? m_status->text() : m_status->text() + QStringLiteral(" (%1)").arg(m_resultsPath));
    updateControls();
}

void BenchmarksPage::saveResults()
{
    if (m_resultsPath.isEmpty() || m_results.rows.empty()) return;
    try {
        bench::write_results(m_resultsPath.toStdString(), m_results);
    } catch (const std::exception& e) {
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("Could not save the results"),
                              QString::fromUtf8(e.what()));
        m_resultsPath.clear();
    }
}

bool BenchmarksPage::openResults(const QString& path)
{
    if (m_controller->isRunning()) {
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("A benchmark is running"),
                              tr("Stop it (or wait for it) before opening a results file."));
        return false;
    }
    bench::ResultsFile file;
    try {
        file = bench::read_results(path.toStdString());
    } catch (const std::exception& e) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("Cannot open %1").arg(QFileInfo(path).fileName()),
                              QString::fromUtf8(e.what()));
        log(tr("cannot open %1: %2").arg(path, QString::fromUtf8(e.what())));
        return false;
    }
    m_banner->clear();
    m_results = std::move(file);
    m_resultsPath = path;
    m_compared.reset();
    m_comparedName.clear();
    m_charts->clear();
    m_charts->setMachine(m_results.machine);
    m_charts->addRows(m_results.rows);
    m_claims->setRows(m_results.rows);
    for (auto& [id, bar] : m_progress) {
        bar->setValue(0);
        bar->setFormat(QString());
    }
    showResults();
    m_status->setText(tr("Showing %1: %2 points measured on %3, %4")
                          .arg(QFileInfo(path).fileName())
                          .arg(m_results.rows.size())
                          .arg(qs(m_results.machine.device), qs(m_results.started)));
    m_status->setToolTip(path);
    log(m_status->text());
    updateControls();
    return true;
}

bool BenchmarksPage::compareWith(const QString& path)
{
    if (m_results.rows.empty()) {
        m_banner->showMessage(MessageBanner::Kind::Info, tr("Nothing to compare with yet"),
                              tr("Run suites or open a results file first; the second file is then overlaid on it."));
        return false;
    }
    try {
        m_compared = bench::read_results(path.toStdString());
    } catch (const std::exception& e) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("Cannot open %1").arg(QFileInfo(path).fileName()),
                              QString::fromUtf8(e.what()));
        return false;
    }
    m_comparedName = QFileInfo(path).fileName();
    m_charts->addRows(m_compared->rows, QStringLiteral(" (B)"));
    showResults();
    m_tabs->setCurrentWidget(m_table);
    log(tr("comparing with %1 (B), measured on %2").arg(path, qs(m_compared->machine.device)));
    return true;
}

void BenchmarksPage::showResults()
{
    // Thousands of rows take the GUI thread a while to lay out: only when seen.
    m_tableStale = true;
    if (m_tabs->currentWidget() == m_table) fillResultsTable();
}

void BenchmarksPage::fillResultsTable()
{
    if (!m_tableStale) return;
    m_tableStale = false;
    m_table->setSortingEnabled(false);
    m_table->clearContents();
    if (m_compared) {
        const std::vector<bench::ComparedValue> pairs = bench::compare_results(m_results, *m_compared);
        m_table->setColumnCount(8);
        m_table->setHorizontalHeaderLabels({tr("Suite"), tr("Series"), tr("Tags"), tr("Size"), tr("Metric"),
                                            tr("A: %1").arg(qs(m_results.machine.device)),
                                            tr("B: %1").arg(qs(m_compared->machine.device)), tr("B / A")});
        m_table->setRowCount(int(pairs.size()));
        for (int i = 0; i < int(pairs.size()); ++i) {
            const bench::ComparedValue& p = pairs[size_t(i)];
            m_table->setItem(i, 0, new QTableWidgetItem(qs(p.suite)));
            m_table->setItem(i, 1, new QTableWidgetItem(qs(p.series)));
            m_table->setItem(i, 2, new QTableWidgetItem(tagText(p.tags)));
            m_table->setItem(i, 3, numberItem(p.x));
            m_table->setItem(i, 4, new QTableWidgetItem(
                                       p.unit.empty() ? qs(p.metric) : QStringLiteral("%1 (%2)").arg(qs(p.metric), qs(p.unit))));
            m_table->setItem(i, 5, numberItem(p.a));
            m_table->setItem(i, 6, numberItem(p.b));
            m_table->setItem(i, 7, numberItem(p.ratio));
        }
    } else {
        int count = 0;
        for (const bench::Row& r : m_results.rows) count += int(r.y.size());
        m_table->setColumnCount(7);
        m_table->setHorizontalHeaderLabels(
            {tr("Suite"), tr("Series"), tr("Tags"), tr("Size"), tr("Metric"), tr("Value"), tr("Unit")});
        m_table->setRowCount(count);
        int i = 0;
        for (const bench::Row& r : m_results.rows)
            for (const bench::Measure& m : r.y) {
                m_table->setItem(i, 0, new QTableWidgetItem(qs(r.suite)));
                m_table->setItem(i, 1, new QTableWidgetItem(qs(r.series)));
                m_table->setItem(i, 2, new QTableWidgetItem(tagText(r.tags)));
                m_table->setItem(i, 3, numberItem(r.x));
                m_table->setItem(i, 4, new QTableWidgetItem(qs(m.key)));
                m_table->setItem(i, 5, numberItem(m.value));
                m_table->setItem(i, 6, new QTableWidgetItem(qs(m.unit)));
                ++i;
            }
    }
    m_table->setSortingEnabled(true);
    m_table->resizeColumnsToContents();
}

void BenchmarksPage::showChartFor(const std::string& suite, const std::string& metric,
                                  const std::map<std::string, std::string>& tags)
{
    if (m_charts->selectChart(suite, metric, tags)) {
        m_tabs->setCurrentWidget(m_charts);
        return;
    }
    m_banner->showMessage(MessageBanner::Kind::Info, tr("No chart for this claim yet"),
                          tr("Run the %1 suite to measure it.").arg(qs(suite)));
}

bool BenchmarksPage::exportChart(const QString& pngPath, const QString& csvPath)
{
    LiveChart* chart = m_charts->currentChart();
    if (!chart) return false;
    return chart->exportPng(pngPath) && chart->exportCsv(csvPath);
}

} // namespace crucible::ui
