#include "ui/pages/system_page.h"

#include "kernels/backend_factory.h"
#include "kernels/cuda_plugin.h"
#include "ui/app_context.h"
#include "ui/format.h"
#include "ui/icons.h"
#include "ui/models/device_inventory.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/stacked_bar.h"

#include <QDesktopServices>
#include <QDir>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QUrl>
#include <QVBoxLayout>

namespace crucible::ui {

namespace {

QLabel* value(const QString& text, QWidget* parent)
{
    auto* l = new QLabel(text, parent);
    l->setWordWrap(true);
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    return l;
}

QGroupBox* deviceCard(const DeviceDescription& d, const QString& title, QWidget* parent)
{
    auto* box = new QGroupBox(title, parent);
    auto* layout = new QVBoxLayout(box);
    auto* name = new QLabel(d.name, box);
    name->setProperty("role", "metric");
    name->setWordWrap(true);
    layout->addWidget(name);
    auto* form = new QFormLayout;
    form->setLabelAlignment(Qt::AlignRight);
    for (const auto& [k, v] : d.facts.details) form->addRow(qs(k), value(qs(v), box));
    bool peakListed = false;
    for (const auto& kv : d.facts.details) peakListed |= qs(kv.first).startsWith(QLatin1String("Peak"));
    if (d.facts.peak_tflops > 0 && !peakListed)
        form->addRow(QObject::tr("Peak for MFU"), value(QObject::tr("%1 TFLOP/s").arg(d.facts.peak_tflops, 0, 'f', 1), box));
    layout->addLayout(form);
    if (d.memory.total_bytes > 0) {
        auto* bar = new StackedBar(box);
        const double used = double(d.memory.total_bytes - std::min(d.memory.free_bytes, d.memory.total_bytes));
        bar->setParts({{QObject::tr("In use"), used, theme::series(1), formatBytes(used)},
                       {QObject::tr("Free"), double(d.memory.free_bytes), QColor(0xe5, 0xe7, 0xeb),
                        formatBytes(double(d.memory.free_bytes))}});
        layout->addWidget(makeNote(QObject::tr("Memory: %1 total").arg(formatBytes(double(d.memory.total_bytes))), box));
        layout->addWidget(bar);
    }
    return box;
}

} // namespace

SystemPage::SystemPage(AppContext& context, QWidget* parent) : QWidget(parent), m_context(context)
{
    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    auto* head = new QHBoxLayout;
    auto* titles = new QVBoxLayout;
    addPageHeader(titles, tr("System"), tr("The devices Crucible can train on, and how this copy was built."));
    head->addLayout(titles, 1);
    auto* refreshButton = new QPushButton(icons::glyph(QStringLiteral("refresh"), theme::text()), tr("Refresh"), this);
    refreshButton->setObjectName(QStringLiteral("refreshSystemButton"));
    head->addWidget(refreshButton, 0, Qt::AlignTop);
    outer->addLayout(head);

    auto* scroll = new QScrollArea(this);
    scroll->setObjectName(QStringLiteral("formScroll"));
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    auto* holder = new QWidget(scroll);
    m_layout = new QVBoxLayout(holder);
    m_layout->setContentsMargins(0, 0, 0, 0);
    scroll->setWidget(holder);
    outer->addWidget(scroll, 1);

    connect(refreshButton, &QPushButton::clicked, context.devices(), &DeviceInventory::refresh);
    connect(context.devices(), &DeviceInventory::changed, this, &SystemPage::refresh);
    refresh();
}

void SystemPage::refresh()
{
    delete m_content;
    m_content = new QWidget;
    auto* grid = new QGridLayout(m_content);
    grid->setContentsMargins(0, 0, 0, 0);
    grid->setSpacing(14);
    const DeviceInventory* devices = m_context.devices();

    // Cards fill a two-column grid in reading order.
    int cell = 0;
    auto place = [&](QWidget* card) {
        grid->addWidget(card, cell / 2, cell % 2);
        ++cell;
    };
    place(deviceCard(devices->cpu(), tr("CPU"), m_content));

    if (devices->cudaAvailable()) {
        int i = 0;
        for (const DeviceDescription& d : devices->cudaDevices()) place(deviceCard(d, tr("GPU %1 (CUDA)").arg(i++), m_content));
    } else {
        auto* box = new QGroupBox(tr("GPU (CUDA)"), m_content);
        auto* l = new QVBoxLayout(box);
        QString reason = devices->cudaProbed() ? devices->cudaUnavailableReason() : tr("Looking for CUDA devices…");
        if (!reason.isEmpty()) reason[0] = reason[0].toUpper();
        if (!reason.endsWith(QLatin1Char('.')) && !reason.endsWith(QStringLiteral("…"))) reason += QLatin1Char('.');
        auto* why = value(reason, box);
        why->setObjectName(QStringLiteral("cudaReason"));
        l->addWidget(new QLabel(tr("<b>No GPU in use</b>"), box));
        l->addWidget(why);
        // What to do depends on what is missing: the plugin itself, or the
        // runtime and driver it needs (the reason above names which).
        l->addWidget(makeNote(built_with_cuda()
                                  ? tr("Training runs on the CPU: correct and complete, only slower. The CUDA backend "
                                       "is installed; it needs an NVIDIA GPU of compute capability 8.0 or newer and "
                                       "a driver for it.")
                                  : tr("Training runs on the CPU: correct and complete, only slower. With an NVIDIA "
                                       "GPU, install the driver and the CUDA runtime; a build without the CUDA "
                                       "backend plugin needs the CUDA Toolkit and a rebuild."),
                              box));
        l->addStretch(1);
        place(box);
    }

    auto* build = new QGroupBox(tr("This build"), m_content);
    auto* b = new QFormLayout(build);
    b->setLabelAlignment(Qt::AlignRight);
    b->addRow(tr("Crucible"), value(QStringLiteral(CRUCIBLE_VERSION), build));
    b->addRow(tr("Qt"), value(tr("%1 (built with %2)").arg(QString::fromLatin1(qVersion()), QStringLiteral(QT_VERSION_STR)), build));
    {
        std::string whyNot;
        const std::string plugin = cuda_plugin_path(&whyNot);
        b->addRow(tr("CUDA backend"), value(!plugin.empty() ? tr("loaded from %1").arg(QString::fromStdString(plugin))
                                                            : tr("not loaded (CPU only)"),
                                            build));
    }
    b->addRow(tr("CPU threads"), value(tr("%1 by default (one per hardware thread)").arg(default_cpu_threads()), build));
#if defined(__clang__)
    b->addRow(tr("Compiler"), value(QStringLiteral("Clang " __clang_version__), build));
#elif defined(__GNUC__)
    b->addRow(tr("Compiler"), value(QStringLiteral("GCC " __VERSION__), build));
#endif
#ifdef NDEBUG
    b->addRow(tr("Build type"), value(tr("optimised (release)"), build));
#else
    b->addRow(tr("Build type"), value(tr("debug: slower"), build));
#endif
    if (cell % 2) ++cell;   // build and folders share a row
    place(build);

    auto* paths = new QGroupBox(tr("Folders"), m_content);
    auto* p = new QFormLayout(paths);
    p->setLabelAlignment(Qt::AlignRight);
    auto pathRow = [&](const QString& label, const QString& path) {
        auto* row = new QHBoxLayout;
        auto* text = value(QDir::toNativeSeparators(path), paths);
        auto* open = new QPushButton(tr("Open"), paths);
        open->setEnabled(QFileInfo::exists(path));
        QObject::connect(open, &QPushButton::clicked, paths, [path] { QDesktopServices::openUrl(QUrl::fromLocalFile(path)); });
        row->addWidget(text, 1);
        row->addWidget(open);
        p->addRow(label, row);
    };
    pathRow(tr("Runs"), m_context.runsDir());
    pathRow(tr("Cache"), m_context.cacheDir());
    p->addRow(tr("Settings"), value(QDir::toNativeSeparators(QSettings().fileName()), paths));
    place(paths);
    grid->setColumnStretch(0, 1);
    grid->setColumnStretch(1, 1);
    grid->setRowStretch(grid->rowCount(), 1);
    m_layout->addWidget(m_content);
}

} // namespace crucible::ui
