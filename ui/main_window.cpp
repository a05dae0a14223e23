#include "ui/main_window.h"

#include "ui/app_context.h"
#include "ui/format.h"
#include "ui/icons.h"
#include "ui/models/device_inventory.h"
#include "ui/models/run_config_model.h"
#include "ui/pages/benchmarks_page.h"
#include "ui/pages/chat_page.h"
#include "ui/pages/data_page.h"
#include "ui/pages/model_page.h"
#include "ui/pages/runs_page.h"
#include "ui/pages/system_page.h"
#include "ui/pages/train_page.h"
#include "ui/theme.h"
#include "ui/widgets/value_label.h"
#include "ui/widgets/wheel_guard.h"
#include "ui/workers/training_controller.h"

#include <QApplication>
#include <QCloseEvent>
#include <QFile>
#include <QFileDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMenuBar>
#include <QMessageBox>
#include <QProgressDialog>
#include <QScreen>
#include <QScrollArea>
#include <QSettings>
#include <QStackedWidget>
#include <QStatusBar>

namespace crucible::ui {

const std::vector<PageSpec>& pageSpecs()
{
    // One row per page, in sidebar order: its name, icon, tooltip and a
    // factory that receives the shared AppContext. A new page is one more row.
    static const std::vector<PageSpec> specs = {
        {QStringLiteral("Model"), QStringLiteral("model"), QObject::tr("Architecture, size, compute and memory"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new ModelPage(c, p); }},
        {QStringLiteral("Data"), QStringLiteral("data"), QObject::tr("Corpus, tokenizer and token preview"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new DataPage(c, p); }},
        {QStringLiteral("Train"), QStringLiteral("train"), QObject::tr("Optimizer, schedule, live charts"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new TrainPage(c, p); }},
        {QStringLiteral("Runs"), QStringLiteral("runs"), QObject::tr("Runs on disk, compared on one chart"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new RunsPage(c, p); }},
        {QStringLiteral("Benchmarks"), QStringLiteral("bench"), QObject::tr("Suites measured live, claims checked"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new BenchmarksPage(c, p); }},
        {QStringLiteral("Chat"), QStringLiteral("chat"), QObject::tr("Talk to a trained model"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new ChatPage(c, p); }},
        {QStringLiteral("System"), QStringLiteral("system"), QObject::tr("Devices, memory and build"),
         [](AppContext& c, QWidget* p) -> QWidget* { return new SystemPage(c, p); }},
    };
    return specs;
}

MainWindow::MainWindow(AppContext& context, QWidget* parent) : QMainWindow(parent), m_context(context)
{
    setWindowTitle(QStringLiteral("Crucible"));
    setWindowIcon(icons::app());
    WheelGuard::install(qobject_cast<QApplication*>(QCoreApplication::instance()));

    auto* central = new QWidget(this);
    auto* row = new QHBoxLayout(central);
    row->setContentsMargins(0, 0, 0, 0);
    row->setSpacing(0);
    m_pageList = new QListWidget(central);
    m_pageList->setObjectName(QStringLiteral("pageList"));
    m_pageList->setViewMode(QListView::IconMode);
    m_pageList->setFlow(QListView::TopToBottom);
    m_pageList->setMovement(QListView::Static);
    m_pageList->setWrapping(false);
    m_pageList->setIconSize(QSize(26, 26));
    m_pageList->setGridSize(QSize(104, 68));   // wide enough for "Benchmarks"
    m_pageList->setFixedWidth(112);
    m_pageList->setFocusPolicy(Qt::NoFocus);
    m_pageList->setVerticalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_stack = new QStackedWidget(central);
    row->addWidget(m_pageList);
    row->addWidget(m_stack, 1);
    setCentralWidget(central);

    for (const PageSpec& spec : pageSpecs()) {
        auto* item = new QListWidgetItem(icons::page(spec.icon), spec.name, m_pageList);
        item->setToolTip(spec.toolTip);
        item->setTextAlignment(Qt::AlignHCenter);
        item->setSizeHint(QSize(104, 64));
        QWidget* page = spec.create(context, m_stack);
        page->setObjectName(spec.name.toLower() + QStringLiteral("Page"));
        // Each page fills the window and scrolls only where the window is
        // smaller than the page can be (a 1280×720 screen): the window never
        // grows past the screen to fit its tallest page.
        auto* scroll = new QScrollArea(m_stack);
        scroll->setObjectName(spec.name.toLower() + QStringLiteral("PageScroll"));
        scroll->setFrameShape(QFrame::NoFrame);
        scroll->setWidgetResizable(true);
        scroll->setWidget(page);
        m_stack->addWidget(scroll);
        m_pages.insert(spec.name, page);
    }
    connect(m_pageList, &QListWidget::currentRowChanged, this, [this](int row) {
        if (row < 0) return;
        m_stack->setCurrentIndex(row);
        QSettings().setValue(QStringLiteral("window/page"), m_pageList->item(row)->text());
    });
    connect(&context, &AppContext::pageRequested, this, &MainWindow::showPage);

    m_runStatus = new ValueLabel(QStringLiteral("● Training · step 000000 of 000000"), this);
    m_runStatus->setObjectName(QStringLiteral("runStatus"));
    m_runStatus->setAlignment(Qt::AlignRight | Qt::AlignVCenter);
    m_deviceStatus = new QLabel(this);
    statusBar()->addPermanentWidget(m_runStatus);
    statusBar()->addPermanentWidget(m_deviceStatus);
    const TrainingController* training = context.training();
    connect(training, &TrainingController::stateChanged, this, &MainWindow::updateRunStatus);
    connect(training, &TrainingController::stepsReceived, this, [this](const QVector<StepMetrics>& steps) {
        // Cheap on purpose: this runs for every batch of steps.
        m_latestStep = steps.back().step;
        if (!m_statusTimer.isActive()) m_statusTimer.start();
    });
    m_statusTimer.setSingleShot(true);
    m_statusTimer.setInterval(500);
    connect(&m_statusTimer, &QTimer::timeout, this, [this] {
        if (m_context.training()->state() != TrainingController::State::Running) return;
        m_runStatus->setText(tr("● Training · step %1 of %2").arg(m_latestStep).arg(m_context.training()->runInfo().total_steps));
    });
    connect(context.config(), &RunConfigModel::configChanged, this, &MainWindow::updateRunStatus);
    connect(context.devices(), &DeviceInventory::changed, this, &MainWindow::updateRunStatus);
    connect(training, &TrainingController::finished, this, [this](const RunSummary& s) {
        statusBar()->showMessage(s.outcome == RunOutcome::failed   ? tr("The run failed: see the Train page")
                                 : s.outcome == RunOutcome::stopped ? tr("Run stopped; its checkpoint is saved")
                                                                    : tr("Run finished"),
                                 8000);
    });
    buildMenus();

    QSettings settings;
    const QString lastPreset = settings.value(QStringLiteral("model/lastPreset"), QStringLiteral("nano")).toString();
    if (lastPreset != QLatin1String("nano")) {
        try {
            context.config()->applyPreset(lastPreset);
        } catch (...) {
            // A preset that no longer exists: stay on nano.
        }
    }
    if (!restoreGeometry(settings.value(QStringLiteral("window/geometry")).toByteArray())) {
        // First start: a roomy window, but never larger than the screen (a
        // 1280×720 laptop gets the whole of it, not a window it cannot show).
        QSize size(1440, 900);
        if (const QScreen* s = screen()) size = size.boundedTo(s->availableGeometry().size());
        resize(size);
    }
    showPage(settings.value(QStringLiteral("window/page"), QStringLiteral("Model")).toString());
    if (m_pageList->currentRow() < 0) m_pageList->setCurrentRow(0);
    updateRunStatus();
}

void MainWindow::buildMenus()
{
    QMenu* file = menuBar()->addMenu(tr("&File"));
    file->addAction(tr("&Load configuration…"), QKeySequence::Open, this, &MainWindow::loadConfiguration);
    file->addAction(tr("&Save configuration…"), QKeySequence::Save, this, &MainWindow::saveConfiguration);
    file->addSeparator();
    file->addAction(tr("&Quit"), QKeySequence::Quit, this, &QWidget::close);
    QMenu* view = menuBar()->addMenu(tr("&View"));
    int n = 1;
    for (const PageSpec& spec : pageSpecs()) {
        const QString name = spec.name;
        view->addAction(name, QKeySequence(QStringLiteral("Ctrl+%1").arg(n++)), this, [this, name] { showPage(name); });
    }
    QMenu* help = menuBar()->addMenu(tr("&Help"));
    help->addAction(tr("&About Crucible"), this, [this] {
        QMessageBox::about(this, tr("About Crucible"),
                           tr("<h3>Crucible %1</h3><p>A desktop playground for training and understanding "
                              "LLaMA-style language models.</p><p>Runs are kept in %2.</p>")
                               .arg(QStringLiteral(CRUCIBLE_VERSION), m_context.runsDir().toHtmlEscaped()));
    });
}

QString MainWindow::currentPage() const
{
    const QListWidgetItem* item = m_pageList->currentItem();
    return item ? item->text() : QString();
}

void MainWindow::showPage(const QString& name)
{
    for (int i = 0; i < m_pageList->count(); ++i)
        if (m_pageList->item(i)->text() == name) m_pageList->setCurrentRow(i);
}

void MainWindow::updateRunStatus()
{
    const TrainingController* t = m_context.training();
    const RunConfig& c = m_context.config()->config();
    m_deviceStatus->setText(QStringLiteral("  %1  ").arg(m_context.devices()->nameFor(c.train.device)));
    using State = TrainingController::State;
    QString text;
    switch (t->state()) {
    case State::Idle: text = tr("%1 · %2 parameters").arg(qs(c.model.name), formatCount(double(count_params(c.model).total()))); break;
    case State::Preparing: text = tr("● Preparing the run…"); break;
    case State::Running: text = tr("● Training"); break;
    case State::Paused: text = tr("❚❚ Paused"); break;
    case State::Stopping: text = tr("● Stopping…"); break;
    }
    if (!c.model.problems().empty() && t->state() == State::Idle) text = tr("The model settings need attention");
    m_runStatus->setText(text);
    m_runStatus->setColor(t->isActive() ? theme::accent() : theme::text());
}

void MainWindow::loadConfiguration()
{
    QSettings settings;
    const QString path = QFileDialog::getOpenFileName(
        this, tr("Load a run configuration"), settings.value(QStringLiteral("config/lastDir"), QDir::homePath()).toString(),
        tr("Run configuration (*.json);;All files (*)"));
    if (path.isEmpty()) return;
    settings.setValue(QStringLiteral("config/lastDir"), QFileInfo(path).absolutePath());
    QFile file(path);
    QString error;
    if (!file.open(QIODevice::ReadOnly)) error = tr("%1 cannot be read: %2").arg(path, file.errorString());
    else if (m_context.config()->loadJson(file.readAll(), &error)) return;
    QMessageBox::warning(this, tr("Configuration not loaded"),
                         tr("%1\n\nThe current settings are unchanged. A run's config.json, or a file saved "
                            "from this menu, loads here.").arg(error));
}

void MainWindow::saveConfiguration()
{
    QSettings settings;
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Save the run configuration"),
        QDir(settings.value(QStringLiteral("config/lastDir"), QDir::homePath()).toString()).filePath(QStringLiteral("config.json")),
        tr("Run configuration (*.json)"));
    if (path.isEmpty()) return;
    settings.setValue(QStringLiteral("config/lastDir"), QFileInfo(path).absolutePath());
    QFile file(path);
    if (!file.open(QIODevice::WriteOnly | QIODevice::Truncate) || file.write(m_context.config()->toJson() + '\n') < 0)
        QMessageBox::warning(this, tr("Configuration not saved"),
                             tr("%1 cannot be written: %2. Choose another folder.").arg(path, file.errorString()));
}

void MainWindow::closeEvent(QCloseEvent* event)
{
    TrainingController* training = m_context.training();
    if (training->isActive()) {
        event->ignore();
        if (m_closeWhenStopped) return;   // already stopping
        const auto answer = QMessageBox::question(
            this, tr("A run is training"),
            tr("Stop the run and quit?\n\nThe trainer finishes its current step and writes a checkpoint, so the run "
               "can be resumed from the Runs page later."),
            QMessageBox::Yes | QMessageBox::Cancel, QMessageBox::Cancel);
        if (answer != QMessageBox::Yes) return;
        m_closeWhenStopped = true;
        m_stopping = new QProgressDialog(tr("Stopping the run: finishing the current step and writing a checkpoint…"),
                                         QString(), 0, 0, this);
        m_stopping->setObjectName(QStringLiteral("stoppingDialog"));
        m_stopping->setWindowTitle(tr("Stopping"));
        m_stopping->setWindowModality(Qt::WindowModal);
        m_stopping->setMinimumDuration(0);
        m_stopping->show();
        connect(training, &TrainingController::finished, this, [this] {
            m_stopping->close();
            close();
        }, Qt::QueuedConnection);
        training->stop();
        return;
    }
    QSettings settings;
    settings.setValue(QStringLiteral("window/geometry"), saveGeometry());
    event->accept();
}

} // namespace crucible::ui
