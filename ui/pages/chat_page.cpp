#include "ui/pages/chat_page.h"

#include "core/train/run_dir.h"
#include "ui/app_context.h"
#include "ui/format.h"
#include "ui/icons.h"
#include "ui/models/device_inventory.h"
#include "ui/pages/chat_settings.h"
#ifdef CRUCIBLE_HAS_SERVER
#include "ui/widgets/serve_panel.h"
#endif
#include "ui/pages/chat_transcript_view.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/message_banner.h"

#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QClipboard>
#include <QComboBox>
#include <QDir>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QMenu>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QSettings>
#include <QSplitter>
#include <QStackedWidget>
#include <QStandardItemModel>
#include <QVBoxLayout>

#include <filesystem>

namespace crucible::ui {

namespace {

namespace fs = std::filesystem;

// The most likely tokens reported with each generated one (the inspector's list).
constexpr int kAlternatives = 5;

// The run that holds `path` (a run folder or one of its checkpoints), or empty.
QString runRootOf(const QString& path)
{
    const fs::path p = fs::path(path.toStdString()).lexically_normal();
    if (is_run_directory(p)) return path;
    const fs::path parent = p.has_filename() ? p.parent_path() : p.parent_path().parent_path();
    if (parent.filename() == "checkpoints" && is_run_directory(parent.parent_path()))
        return QString::fromStdString(parent.parent_path().string());
    return {};
}

QString samePath(const QString& path)
{
    const QString c = QFileInfo(path).canonicalFilePath();
    return c.isEmpty() ? QDir::cleanPath(path) : c;
}

} // namespace

ChatPage::ChatPage(AppContext& context, QWidget* parent)
    : QWidget(parent), m_context(context), m_worker(new ChatWorker), m_thread(m_worker, QStringLiteral("chat"))
{
    registerChatMetaTypes();
    connect(this, &ChatPage::loadRequested, m_worker, &ChatWorker::loadModel, Qt::QueuedConnection);
    connect(this, &ChatPage::unloadRequested, m_worker, &ChatWorker::unloadModel, Qt::QueuedConnection);
    connect(this, &ChatPage::generateRequested, m_worker, &ChatWorker::generate, Qt::QueuedConnection);
    connect(this, &ChatPage::adapterRequested, m_worker, &ChatWorker::setAdapterEnabled, Qt::QueuedConnection);
    connect(m_worker, &ChatWorker::modelLoaded, this, &ChatPage::onModelLoaded, Qt::QueuedConnection);
    connect(m_worker, &ChatWorker::modelFailed, this, &ChatPage::onModelFailed, Qt::QueuedConnection);
    connect(m_worker, &ChatWorker::tokensReady, this, &ChatPage::onTokens, Qt::QueuedConnection);
    connect(m_worker, &ChatWorker::replyFinished, this, &ChatPage::onReplyFinished, Qt::QueuedConnection);
    connect(m_worker, &ChatWorker::replyFailed, this, &ChatPage::onReplyFailed, Qt::QueuedConnection);

    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    addPageHeader(outer, tr("Chat"),
                  tr("Talk to a model you trained. It continues the conversation as text, in the voice of what it "
                     "read; turn on “Show alternatives” to see how sure it was of every token."));
    outer->addWidget(buildModelBar());
    m_banner = new MessageBanner(this);
    m_banner->setObjectName(QStringLiteral("chatBanner"));
    outer->addWidget(m_banner);
    m_stack = new QStackedWidget(this);
    m_stack->addWidget(buildEmptyState());
    auto* splitter = new QSplitter(Qt::Horizontal, m_stack);
    splitter->setObjectName(QStringLiteral("chatSplitter"));
    splitter->setChildrenCollapsible(false);
    splitter->addWidget(buildConversation());
    m_inspector = new TokenInspector(splitter);
    m_inspector->setObjectName(QStringLiteral("tokenInspector"));
    m_inspector->hide();
    splitter->addWidget(m_inspector);
    auto* scroll = new QScrollArea(splitter);
    scroll->setObjectName(QStringLiteral("formScroll"));
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    m_settings = new ChatSettings(scroll);
    scroll->setWidget(m_settings);
    scroll->setMinimumWidth(290);
    splitter->addWidget(scroll);
    splitter->setStretchFactor(0, 1);
    splitter->setStretchFactor(1, 0);
    splitter->setStretchFactor(2, 0);
    splitter->setSizes({900, 250, 310});
    m_stack->addWidget(splitter);
    outer->addWidget(m_stack, 1);

    m_saveTimer.setSingleShot(true);
    m_saveTimer.setInterval(800);
    connect(&m_saveTimer, &QTimer::timeout, this, &ChatPage::saveConversation);

    connect(&m_scanner, &RunScanner::finished, this, &ChatPage::showRuns);
    connect(&context, &AppContext::runsChanged, this, &ChatPage::refreshRuns);
    connect(&context, &AppContext::runsDirChanged, this, &ChatPage::refreshRuns);
    connect(&context, &AppContext::currentRunChanged, this, [this](const QString& dir) {
        m_follow = dir;
        refreshRuns();
    });
    connect(context.devices(), &DeviceInventory::changed, this, &ChatPage::rebuildDevices);
    m_follow = context.currentRun();
    connect(m_settings, &ChatSettings::formatEdited, this, &ChatPage::conversationEdited);
    m_alternatives->setChecked(QSettings().value(QStringLiteral("chat/showAlternatives"), false).toBool());
    rebuildDevices();
    refreshRuns();
    updateControls();
}

ChatPage::~ChatPage()
{
    if (m_conversationDirty) saveConversation();
    m_worker->requestStop();   // then m_thread quits and waits
}

// ---- building --------------------------------------------------------------------------------

QWidget* ChatPage::buildModelBar()
{
    auto* bar = new QWidget(this);
    auto* row = new QHBoxLayout(bar);
    row->setContentsMargins(0, 0, 0, 4);
    m_runCombo = new QComboBox(bar);
    m_runCombo->setObjectName(QStringLiteral("runCombo"));
    m_runCombo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    // Room for a whole generated run name ("nano-adamw-20261207-203043 · step 60").
    m_runCombo->setMinimumContentsLength(38);
    m_runCombo->setToolTip(tr("The run to talk to: its latest checkpoint is loaded"));
    m_browse = new QPushButton(icons::glyph(QStringLiteral("folder"), theme::text()), tr("Browse…"), bar);
    m_browse->setObjectName(QStringLiteral("browseButton"));
    m_browse->setToolTip(tr("Open a run folder, or a checkpoint folder (checkpoints/step_N), from anywhere"));
    m_draftCombo = new QComboBox(bar);
    m_draftCombo->setObjectName(QStringLiteral("draftCombo"));
    m_draftCombo->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    m_draftCombo->setMinimumContentsLength(12);
    m_draftCombo->setToolTip(tr("Speculative decoding: a smaller model trained with the same tokenizer proposes a few "
                                "tokens, and this model checks them all in one step. Replies follow this model's "
                                "distribution either way; only the speed changes."));
    m_deviceCombo = new QComboBox(bar);
    m_deviceCombo->setObjectName(QStringLiteral("deviceCombo"));
    m_adapter = new QCheckBox(tr("Adapter"), bar);
    m_adapter->setObjectName(QStringLiteral("adapterToggle"));
    m_adapter->setToolTip(tr("On: the fine-tune answers (its adapters merged into the base). Off: the base alone "
                             "answers, to compare replies to the same prompt. Both weight sets stay loaded."));
    m_adapter->hide();
    m_busy = new QProgressBar(bar);
    m_busy->setObjectName(QStringLiteral("chatBusy"));
    m_busy->setRange(0, 0);
    m_busy->setTextVisible(false);
    m_busy->setFixedSize(70, 8);
    m_busy->hide();
    m_modelStatus = new QLabel(bar);
    m_modelStatus->setObjectName(QStringLiteral("modelStatus"));
    m_modelStatus->setProperty("role", "subtitle");
    m_modelStatus->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_modelStatus->setMinimumWidth(120);
    m_modelStatus->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
    row->addWidget(new QLabel(tr("Run"), bar));
    row->addWidget(m_runCombo);
    row->addWidget(m_browse);
    row->addSpacing(14);
    row->addWidget(new QLabel(tr("Draft"), bar));
    row->addWidget(m_draftCombo);
    row->addSpacing(14);
    row->addWidget(new QLabel(tr("Device"), bar));
    row->addWidget(m_deviceCombo);
    row->addSpacing(14);
    row->addWidget(m_adapter);
    row->addWidget(m_busy);
    row->addWidget(m_modelStatus, 1);

    connect(m_runCombo, &QComboBox::activated, this, [this](int index) {
        m_follow.clear();   // the user chose: stop following the trained run
        selectRun(m_runCombo->itemData(index).toString(), true);
    });
    connect(m_browse, &QPushButton::clicked, this, &ChatPage::browse);
    connect(m_adapter, &QCheckBox::toggled, this, [this](bool on) {
        m_info.adapterEnabled = on;
        emit adapterRequested(on);
    });
    connect(m_draftCombo, &QComboBox::activated, this, [this](int index) {
        m_draftPath = m_draftCombo->itemData(index).toString();
        requestLoad();
    });
    connect(m_deviceCombo, &QComboBox::activated, this, [this](int index) {
        QSettings().setValue(QStringLiteral("chat/device"), m_deviceCombo->itemData(index));
        requestLoad();
    });
    return bar;
}

QWidget* ChatPage::buildEmptyState()
{
    auto* page = new QWidget(this);
    page->setObjectName(QStringLiteral("chatEmptyState"));
    auto* column = new QVBoxLayout(page);
    column->addStretch(2);
    auto* title = new QLabel(tr("No model to talk to yet"), page);
    title->setProperty("role", "heading");
    title->setAlignment(Qt::AlignCenter);
    auto* text = new QLabel(tr("Chat needs a trained run. Train one on the Train page — the nano preset learns to write "
                               "Shakespeare-like lines in a few minutes on a CPU — then come back here to talk to it. "
                               "A run or checkpoint folder from elsewhere opens with Browse."),
                            page);
    text->setWordWrap(true);
    text->setAlignment(Qt::AlignCenter);
    text->setProperty("role", "subtitle");
    text->setFixedWidth(540);
    auto* centred = new QHBoxLayout;
    centred->addStretch(1);
    centred->addWidget(text);
    centred->addStretch(1);
    auto* buttons = new QHBoxLayout;
    auto* train = new QPushButton(icons::glyph(QStringLiteral("train"), Qt::white), tr("Go to the Train page"), page);
    train->setObjectName(QStringLiteral("goToTrainButton"));
    train->setProperty("primary", true);
    auto* browse = new QPushButton(icons::glyph(QStringLiteral("folder"), theme::text()), tr("Browse…"), page);
    buttons->addStretch(1);
    buttons->addWidget(train);
    buttons->addWidget(browse);
    buttons->addStretch(1);
    column->addWidget(title);
    column->addLayout(centred);
    column->addSpacing(8);
    column->addLayout(buttons);
    column->addStretch(3);
    connect(train, &QPushButton::clicked, this, [this] { m_context.requestPage(QStringLiteral("Train")); });
    connect(browse, &QPushButton::clicked, this, &ChatPage::browse);
    return page;
}

QWidget* ChatPage::buildConversation()
{
    auto* area = new QWidget(this);
    auto* column = new QVBoxLayout(area);
    column->setContentsMargins(0, 0, 8, 0);
    m_transcript = new ChatTranscriptView(area);
    m_transcript->setObjectName(QStringLiteral("transcriptView"));
    m_transcript->setPlaceholderText(tr("Write a message below to begin. The model reads the whole conversation "
                                        "each time and continues it."));
    column->addWidget(m_transcript, 1);

    auto* statusRow = new QHBoxLayout;
    m_replyStats = makeNote(QString(), area);
    m_replyStats->setObjectName(QStringLiteral("replyStats"));
    m_alternatives = new QCheckBox(tr("Show alternatives"), area);
    m_alternatives->setObjectName(QStringLiteral("showAlternatives"));
    m_alternatives->setToolTip(tr("Colour each token by how likely the model found it, and list the tokens it weighed "
                                  "instead for the one under the mouse"));
    statusRow->addWidget(m_replyStats, 1);
#ifdef CRUCIBLE_HAS_SERVER
    // The run chosen above, over the OpenAI API, beside the chat.
    m_serve = new ServePanel(area);
    m_serve->setSource([this] { return ServePanel::Source{m_selected, m_deviceCombo->currentData().toString()}; });
    statusRow->addWidget(m_serve);
    statusRow->addSpacing(14);
#endif
    statusRow->addWidget(m_alternatives);
    column->addLayout(statusRow);

    m_input = new QPlainTextEdit(area);
    m_input->setObjectName(QStringLiteral("messageInput"));
    m_input->setPlaceholderText(tr("Write a message… (Ctrl+Enter sends)"));
    m_input->setTabChangesFocus(true);
    m_input->setFixedHeight(m_input->fontMetrics().lineSpacing() * 3 + 16);
    m_input->installEventFilter(this);
    column->addWidget(m_input);

    auto* buttons = new QHBoxLayout;
    m_send = new QPushButton(tr("Send"), area);
    m_send->setObjectName(QStringLiteral("sendButton"));
    m_send->setProperty("primary", true);
    m_send->setToolTip(tr("Send the message (Ctrl+Enter)"));
    m_send->setMinimumWidth(90);
    m_stop = new QPushButton(tr("Stop"), area);
    m_stop->setObjectName(QStringLiteral("stopButton"));
    m_stop->setToolTip(tr("Stop the reply after the current token (Esc); what was said stays"));
    m_regenerate = new QPushButton(icons::glyph(QStringLiteral("refresh"), theme::text()), tr("Regenerate"), area);
    m_regenerate->setObjectName(QStringLiteral("regenerateButton"));
    m_regenerate->setToolTip(tr("Replace the last reply with a new one"));
    m_copy = new QPushButton(tr("Copy"), area);
    m_copy->setObjectName(QStringLiteral("copyButton"));
    auto* copyMenu = new QMenu(m_copy);
    m_copyConversation = copyMenu->addAction(tr("Copy the conversation"), this, &ChatPage::copyConversation);
    m_copyReply = copyMenu->addAction(tr("Copy the last reply"), this, &ChatPage::copyLastReply);
    m_copy->setMenu(copyMenu);
    m_clear = new QPushButton(icons::glyph(QStringLiteral("remove"), theme::text()), tr("Clear"), area);
    m_clear->setObjectName(QStringLiteral("clearButton"));
    m_clear->setToolTip(tr("Start a new conversation with this run"));
    buttons->addWidget(m_send);
    buttons->addWidget(m_stop);
    buttons->addWidget(m_regenerate);
    buttons->addStretch(1);
    buttons->addWidget(m_copy);
    buttons->addWidget(m_clear);
    column->addLayout(buttons);

    connect(m_send, &QPushButton::clicked, this, &ChatPage::send);
    connect(m_stop, &QPushButton::clicked, this, &ChatPage::stop);
    connect(m_regenerate, &QPushButton::clicked, this, &ChatPage::regenerate);
    connect(m_clear, &QPushButton::clicked, this, &ChatPage::clear);
    connect(m_input, &QPlainTextEdit::textChanged, this, &ChatPage::updateControls);
    connect(m_alternatives, &QCheckBox::toggled, this, [this](bool on) {
        QSettings().setValue(QStringLiteral("chat/showAlternatives"), on);
        m_transcript->setInspecting(on);
        m_inspector->setVisible(on);
        m_transcript->render(m_conversation);
    });
    connect(m_transcript, &ChatTranscriptView::tokenHovered, this, &ChatPage::inspectToken);
    return area;
}

// ---- settings ---------------------------------------------------------------------------------

void ChatPage::rebuildDevices()
{
    const DeviceInventory* devices = m_context.devices();
    // The device last chosen, once it is found (the GPU probe answers late).
    const QString wanted = QSettings().value(QStringLiteral("chat/device"), QStringLiteral("cpu")).toString();
    QSignalBlocker block(m_deviceCombo);
    m_deviceCombo->clear();
    m_deviceCombo->addItem(tr("CPU"), QStringLiteral("cpu"));
    m_deviceCombo->setItemData(0, devices->cpu().name, Qt::ToolTipRole);
    const QList<DeviceDescription> gpus = devices->cudaDevices();
    for (const DeviceDescription& d : gpus) {
        m_deviceCombo->addItem(gpus.size() > 1 ? tr("GPU %1 · %2").arg(d.id.mid(5), d.name) : tr("GPU · %1").arg(d.name), d.id);
    }
    if (gpus.isEmpty()) {
        // Listed but disabled, with the reason, so nobody hunts for a missing option.
        m_deviceCombo->addItem(tr("CUDA (unavailable)"), QStringLiteral("cuda:0"));
        const int i = m_deviceCombo->count() - 1;
        m_deviceCombo->setItemData(i, devices->cudaProbed() ? devices->cudaUnavailableReason() : tr("Still looking for a GPU…"),
                                   Qt::ToolTipRole);
        if (auto* model = qobject_cast<QStandardItemModel*>(m_deviceCombo->model())) model->item(i)->setEnabled(false);
    }
    const int index = m_deviceCombo->findData(wanted);
    const bool usable = index >= 0 && (wanted == QLatin1String("cpu") || !gpus.isEmpty());
    m_deviceCombo->setCurrentIndex(usable ? index : 0);
    if (m_state == State::Ready && m_loaded.device != m_deviceCombo->currentData().toString()) requestLoad();
}

SamplingConfig ChatPage::sampling() const { return m_settings->sampling(); }

int ChatPage::maxNewTokens() const { return m_settings->maxNewTokens(); }

// ---- runs and the model -----------------------------------------------------------------------

bool ChatPage::showsEmptyState() const { return m_stack->currentIndex() == 0; }

void ChatPage::refreshRuns() { m_scanner.scan({m_context.runsDir()}); }

void ChatPage::showRuns()
{
    m_records = m_scanner.runs();
    const QString selected = m_selected;
    {
        const QSignalBlocker b1(m_runCombo), b2(m_draftCombo);
        m_runCombo->clear();
        m_draftCombo->clear();
        m_draftCombo->addItem(tr("None"), QString());
        auto add = [this](const QString& text, const QString& path, const QString& tip, bool usable) {
            for (QComboBox* combo : {m_runCombo, m_draftCombo}) {
                combo->addItem(text, path);
                const int i = combo->count() - 1;
                combo->setItemData(i, tip, Qt::ToolTipRole);
                if (auto* model = qobject_cast<QStandardItemModel*>(combo->model()); model && !usable)
                    model->item(i)->setEnabled(false);
            }
        };
        for (const QString& path : m_browsed)
            add(QStringLiteral("%1 · %2").arg(QFileInfo(path).fileName(), QFileInfo(path).absolutePath()), path, path, true);
        for (const RunRecord& r : m_records) {
            const QString root = qs(r.root.string());
            if (m_browsed.contains(root)) continue;
            QString text = qs(r.name);
            QString tip = root;
            if (r.config)
                tip = tr("%1\n%2, %3 parameters").arg(root, qs(r.config->model.name),
                                                    formatCount(double(count_params(r.config->model).total())));
            if (!r.checkpoints.empty()) text += tr(" · step %1").arg(r.checkpoints.back());
            const bool usable = r.config && !r.checkpoints.empty();
            if (!r.config) tip = qs(r.problem);
            else if (r.checkpoints.empty()) tip = tr("No checkpoint yet: it is written when training ends or stops");
            add(text, root, tip, usable);
        }
        const int draft = m_draftCombo->findData(m_draftPath);
        m_draftCombo->setCurrentIndex(std::max(0, draft));
        if (draft < 0) m_draftPath.clear();
    }
    m_stack->setCurrentIndex(m_runCombo->count() > 0 ? 1 : 0);

    auto usable = [this](int i) {
        const auto* model = qobject_cast<QStandardItemModel*>(m_runCombo->model());
        return i >= 0 && (!model || model->item(i)->isEnabled());
    };
    // The run just trained or opened wins once it can be loaded; otherwise
    // keep the choice, or take the newest run that has a checkpoint.
    int index = -1;
    const int follow = m_follow.isEmpty() ? -1 : m_runCombo->findData(m_follow);
    const bool busy = m_state == State::Generating || m_state == State::Stopping;
    if (!busy && usable(follow)) {
        index = follow;
        m_follow.clear();
    } else if (usable(m_runCombo->findData(selected))) {
        index = m_runCombo->findData(selected);
    } else if (!selected.isEmpty() && busy) {
        index = -1;   // the run being talked to vanished mid-reply: the reply finishes first
    } else {
        for (int i = 0; i < m_runCombo->count() && index < 0; ++i)
            if (usable(i)) index = i;
    }
    {
        const QSignalBlocker block(m_runCombo);
        m_runCombo->setCurrentIndex(index);
    }
    if (!busy) selectRun(index >= 0 ? m_runCombo->itemData(index).toString() : QString());
}

bool ChatPage::openPath(const QString& path)
{
    const QString clean = QDir::cleanPath(path);
    const fs::path p = clean.toStdString();
    const bool run = is_run_directory(p);
    const bool checkpoint = fs::exists(p / "model.safetensors") && fs::exists(p / "tokenizer.model");
    if (!run && !checkpoint) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("%1 holds no model").arg(clean),
                              tr("Choose a run folder (it holds config.json and checkpoints/), or one of its "
                                 "checkpoints/step_N folders (model.safetensors and tokenizer.model)."));
        return false;
    }
    if (run) {
        try {
            if (!RunDirectory(p).latest_checkpoint()) {
                m_banner->showMessage(MessageBanner::Kind::Error, tr("%1 has no checkpoint yet").arg(QFileInfo(clean).fileName()),
                                      tr("A run writes its checkpoint when training ends or is stopped. Train it (or "
                                         "resume it from the Runs page), then open it again."));
                return false;
            }
        } catch (const std::exception& e) {
            m_banner->showMessage(MessageBanner::Kind::Error, tr("%1 cannot be read").arg(clean), QString::fromUtf8(e.what()));
            return false;
        }
    }
    m_browsed.removeAll(clean);
    m_browsed.prepend(clean);
    m_follow = clean;
    m_banner->clear();
    refreshRuns();
    return true;
}

void ChatPage::browse()
{
    QSettings settings;
    const QString dir = QFileDialog::getExistingDirectory(
        this, tr("Open a run or checkpoint folder"), settings.value(QStringLiteral("chat/lastDir"), m_context.runsDir()).toString());
    if (dir.isEmpty()) return;
    settings.setValue(QStringLiteral("chat/lastDir"), QFileInfo(dir).absolutePath());
    openPath(dir);
}

void ChatPage::selectRun(const QString& path, bool retry)
{
    if (path == m_selected || (!path.isEmpty() && !m_selected.isEmpty() && samePath(path) == samePath(m_selected))) {
        if (!path.isEmpty() && (m_state == State::NoModel || (retry && m_state == State::Failed))) requestLoad();
        return;
    }
    if (m_conversationDirty) saveConversation();
    m_selected = path;
    const QString root = path.isEmpty() ? QString() : runRootOf(path);
    m_conversationFile = root.isEmpty() ? QString() : QString::fromStdString(RunDirectory(root.toStdString()).chat_file().string());
    QString error;
    m_conversation = m_conversationFile.isEmpty() ? ChatConversation{} : ChatConversation::load(m_conversationFile, &error);
    m_conversationDirty = false;
    m_banner->clear();
    if (!error.isEmpty())
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("The saved conversation could not be read"),
                              tr("%1. A new conversation starts; the next reply replaces the file.").arg(error));
    m_settings->showFormat(m_conversation);
    m_inspector->clear();
    m_replyStats->setText(m_conversationFile.isEmpty() && !path.isEmpty()
                              ? tr("This checkpoint folder is not inside a run: the conversation will not be saved.")
                              : QString());
    m_transcript->render(m_conversation);
    requestLoad();
}

void ChatPage::requestLoad()
{
    if (m_selected.isEmpty()) {
        m_info = ChatModelInfo{};
        m_loaded = ChatModelRequest{};
        ++m_loadId;   // a load still in flight is stale now
        emit unloadRequested();
        m_modelStatus->clear();
        setState(State::NoModel);
        return;
    }
    ChatModelRequest request;
    request.path = m_selected;
    request.draftPath = m_draftPath;
    request.device = m_deviceCombo->currentData().toString();
    if (m_state == State::Ready && request.path == m_loaded.path && request.draftPath == m_loaded.draftPath &&
        request.device == m_loaded.device)
        return;
    // Loading takes memory and seconds: only for a page someone looks at.
    if (!isVisible()) {
        m_loadPending = true;
        if (m_state != State::NoModel) {
            emit unloadRequested();   // the old model is of no use now: free its memory
            m_modelStatus->clear();
            setState(State::NoModel);
        }
        return;
    }
    m_loadPending = false;
    request.id = ++m_loadId;
    m_modelStatus->setText(tr("Loading %1…").arg(QFileInfo(m_selected).fileName()));
    setState(State::Loading);
    emit loadRequested(request);
}

void ChatPage::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    if (m_loadPending || (!m_selected.isEmpty() && m_state == State::NoModel)) requestLoad();
}

void ChatPage::onModelLoaded(const ChatModelInfo& info)
{
    if (info.id != m_loadId) return;
    m_info = info;
    m_loaded = ChatModelRequest{info.id, info.path, info.draftPath, m_deviceCombo->currentData().toString()};
    if (m_banner->kind() == MessageBanner::Kind::Error) m_banner->clear();
    QString status = tr("%1 parameters · %2-token context · %3")
                         .arg(formatCount(double(info.parameters)))
                         .arg(info.context)
                         .arg(info.device);
    if (!info.draftPath.isEmpty()) status += tr(" · draft %1").arg(formatCount(double(info.draftParameters)));
    if (info.hasAdapter) status += QStringLiteral(" · ") + info.adapter;
    m_modelStatus->setText(status);
    {
        const QSignalBlocker block(m_adapter);
        m_adapter->setVisible(info.hasAdapter);
        m_adapter->setChecked(info.adapterEnabled);
    }
    if (info.hasAdapter) m_adapter->setToolTip(tr("%1 over %2.\nOn: the fine-tune answers (adapters merged). Off: the "
                                                  "base alone answers, to compare replies to the same prompt.")
                                                   .arg(info.adapter, info.base));
    m_modelStatus->setToolTip(tr("%1\nKV cache and buffers: %2").arg(info.checkpoint, formatBytes(double(info.cacheBytes))));
    if (!info.draftProblem.isEmpty()) {
        m_draftPath.clear();
        m_loaded.draftPath.clear();
        const QSignalBlocker block(m_draftCombo);
        m_draftCombo->setCurrentIndex(0);
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("Speculative decoding is off"),
                              tr("%1. The model answers on its own; choose a draft trained with the same tokenizer.")
                                  .arg(info.draftProblem));
    }
    setState(State::Ready);
}

void ChatPage::onModelFailed(quint64 id, const QString& message)
{
    if (id != m_loadId) return;
    m_info = ChatModelInfo{};
    m_loaded = ChatModelRequest{};
    m_adapter->hide();
    m_modelStatus->setText(tr("No model loaded"));
    m_banner->showMessage(MessageBanner::Kind::Error, tr("%1 could not be loaded").arg(QFileInfo(m_selected).fileName()),
                          tr("%1\nChoose another run, or train a new one on the Train page.").arg(message));
    setState(State::Failed);
}

// ---- the conversation -------------------------------------------------------------------------

void ChatPage::setState(State state)
{
    if (state == m_state) return;
    m_state = state;
    updateControls();
    emit stateChanged(state);
}

void ChatPage::updateControls()
{
    const bool replying = m_state == State::Generating || m_state == State::Stopping;
    const bool busy = replying || m_state == State::Loading;
    const bool hasTurns = !m_conversation.turns.isEmpty();
    m_busy->setVisible(busy);
    m_send->setEnabled(m_state == State::Ready && !m_input->toPlainText().trimmed().isEmpty());
    m_stop->setEnabled(m_state == State::Generating);
    m_regenerate->setEnabled(m_state == State::Ready && hasTurns && m_conversation.turns.back().complete);
    m_clear->setEnabled(!replying && hasTurns);
    m_copy->setEnabled(hasTurns || !m_conversation.system.isEmpty());
    m_copyReply->setEnabled(hasTurns && !m_conversation.turns.back().reply.isEmpty());
    m_runCombo->setEnabled(!busy);
    m_browse->setEnabled(!busy);
    m_draftCombo->setEnabled(!busy);
    m_deviceCombo->setEnabled(!busy);
    m_settings->setFormatLocked(replying);
}

bool ChatPage::eventFilter(QObject* watched, QEvent* event)
{
    if (watched == m_input && event->type() == QEvent::KeyPress) {
        const auto* key = static_cast<QKeyEvent*>(event);
        if ((key->key() == Qt::Key_Return || key->key() == Qt::Key_Enter) && (key->modifiers() & Qt::ControlModifier)) {
            send();
            return true;
        }
        if (key->key() == Qt::Key_Escape && m_state == State::Generating) {
            stop();
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

void ChatPage::send()
{
    QString message = m_input->toPlainText();
    while (!message.isEmpty() && message.back().isSpace()) message.chop(1);
    if (m_state != State::Ready || message.trimmed().isEmpty()) return;
    ChatTurn turn;
    turn.message = message;
    m_conversation.turns.push_back(turn);
    m_input->clear();
    startReply();
}

void ChatPage::regenerate()
{
    if (m_state != State::Ready || m_conversation.turns.isEmpty() || !m_conversation.turns.back().complete) return;
    ChatTurn& last = m_conversation.turns.back();
    last = ChatTurn{last.message, {}, {}, {}, false, false};
    startReply();
}

void ChatPage::startReply()
{
    const std::vector<std::string> problems = sampling().problems();
    if (!problems.empty()) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("The sampling settings need attention"), qs(problems.front()));
        m_conversation.turns.back().complete = true;
        m_transcript->render(m_conversation);
        updateControls();
        return;
    }
    const int turn = int(m_conversation.turns.size()) - 1;
    ChatGenerateRequest request;
    request.id = ++m_generationId;
    request.system = m_conversation.system;
    request.userPrefix = m_conversation.userPrefix;
    request.assistantPrefix = m_conversation.assistantPrefix;
    request.history = m_conversation.history(turn);
    request.message = m_conversation.turns[turn].message;
    request.sampling = sampling();
    request.sampling.seed += uint64_t(m_conversation.draws++);
    request.maxNewTokens = maxNewTokens();
    const ChatStopRules rules = m_settings->stopRules();
    request.stopAtBlankLine = rules.blank_line;
    request.stopAtSpeaker = rules.speaker_line;
    request.alternatives = kAlternatives;
    m_banner->clear();
    m_replyStats->setText(tr("Thinking…"));
    m_inspector->clear();
    m_transcript->render(m_conversation);
    m_worker->prepare();
    setState(State::Generating);
    emit generateRequested(request);
}

void ChatPage::stop()
{
    if (m_state != State::Generating) return;
    m_worker->requestStop();
    m_replyStats->setText(tr("Stopping…"));
    setState(State::Stopping);
}

void ChatPage::onTokens(quint64 id, const QVector<ChatToken>& tokens)
{
    if (id != m_generationId || m_conversation.turns.isEmpty()) return;
    ChatTurn& turn = m_conversation.turns.back();
    const int first = int(turn.tokens.size());
    for (const ChatToken& t : tokens) {
        turn.tokens.push_back(t);
        turn.reply += t.text;
    }
    m_transcript->appendTokens(int(m_conversation.turns.size()) - 1, first, tokens);
    if (m_state == State::Generating) m_replyStats->setText(tr("Replying… %1 tokens").arg(turn.tokens.size()));
    emit tokensShown(int(turn.tokens.size()));
}

void ChatPage::onReplyFinished(const ChatReply& reply)
{
    if (reply.id != m_generationId || m_conversation.turns.isEmpty()) return;
    ChatTurn& turn = m_conversation.turns.back();
    // Bytes held back for a possible stop string or a split character come
    // with the end of the reply, not with a token.
    if (reply.text != turn.reply) {
        if (reply.text.startsWith(turn.reply)) {
            ChatToken rest;
            rest.text = reply.text.mid(turn.reply.size());
            rest.probability = -1.0f;
            turn.tokens.push_back(rest);
        } else {
            turn.tokens.clear();
        }
        turn.reply = reply.text;
    }
    const int forgottenBefore = m_conversation.turns.size() > 1 && m_conversation.turns[m_conversation.turns.size() - 2].hasStats
                                    ? m_conversation.turns[m_conversation.turns.size() - 2].stats.forgottenTurns
                                    : 0;
    turn.stats = reply;
    turn.hasStats = true;
    turn.complete = true;
    m_replyStats->setText(replySummary(reply));
    m_transcript->render(m_conversation);
    if (reply.stopReason == QLatin1String("context full"))
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("The context is full"),
                              tr("This model reads at most %1 tokens, and the reply reached that limit. Send another "
                                 "message to go on (the oldest turns make room), or Clear to start afresh.")
                                  .arg(reply.context));
    else if (reply.forgottenTurns > forgottenBefore)
        m_banner->showMessage(MessageBanner::Kind::Info, tr("The model no longer sees the first %n turn(s)", nullptr, reply.forgottenTurns),
                              tr("Its context holds %1 tokens, so the oldest turns made room for the new one. They stay "
                                 "in the transcript.").arg(reply.context));
    setState(State::Ready);
    saveConversation();
    emit replyCompleted(reply);
}

void ChatPage::onReplyFailed(quint64 id, const QString& message)
{
    if (id != m_generationId || m_conversation.turns.isEmpty()) return;
    m_conversation.turns.back().complete = true;
    m_replyStats->clear();
    m_transcript->render(m_conversation);
    m_banner->showMessage(MessageBanner::Kind::Error, tr("The reply failed"), message);
    setState(State::Ready);
    saveConversation();
}

void ChatPage::clear()
{
    if (m_state == State::Generating || m_state == State::Stopping) return;
    m_conversation.turns.clear();
    m_conversation.draws = 0;
    m_replyStats->clear();
    m_inspector->clear();
    m_banner->clear();
    m_transcript->render(m_conversation);
    m_conversationDirty = true;
    saveConversation();
    updateControls();
}

void ChatPage::copyConversation()
{
    QApplication::clipboard()->setText(m_conversation.plainText());
    m_replyStats->setText(tr("Copied the conversation, as the model reads it."));
}

void ChatPage::copyLastReply()
{
    if (m_conversation.turns.isEmpty()) return;
    QApplication::clipboard()->setText(m_conversation.turns.back().reply);
    m_replyStats->setText(tr("Copied the last reply."));
}

void ChatPage::inspectToken(int turn, int index)
{
    if (turn < 0 || turn >= m_conversation.turns.size() || index < 0 || index >= m_conversation.turns[turn].tokens.size())
        return;
    const ChatToken& token = m_conversation.turns[turn].tokens[index];
    if (token.probability < 0) return;
    m_inspector->showToken(token);
    if (m_alternatives->isChecked()) m_transcript->markToken(turn, index);
}

void ChatPage::conversationEdited()
{
    m_conversation.system = m_settings->system();
    m_conversation.userPrefix = m_settings->userPrefix();
    m_conversation.assistantPrefix = m_settings->assistantPrefix();
    m_conversationDirty = true;
    m_saveTimer.start();
    m_transcript->render(m_conversation);
    updateControls();
}

void ChatPage::saveConversation()
{
    m_saveTimer.stop();
    // Never recreate a run folder that was renamed or deleted meanwhile.
    if (m_conversationFile.isEmpty() || !is_run_directory(QFileInfo(m_conversationFile).absolutePath().toStdString()))
        return;
    // A reply in progress is saved when it ends.
    if (!m_conversation.turns.isEmpty() && !m_conversation.turns.back().complete) return;
    const ChatConversation blank;
    const bool isBlank = m_conversation.turns.isEmpty() && m_conversation.system.isEmpty() &&
                         m_conversation.userPrefix == blank.userPrefix &&
                         m_conversation.assistantPrefix == blank.assistantPrefix;
    if (isBlank) {
        // Nothing worth keeping: leave the run folder as training left it.
        if (QFileInfo::exists(m_conversationFile)) QFile::remove(m_conversationFile);
        m_conversationDirty = false;
        return;
    }
    QString error;
    if (!m_conversation.save(m_conversationFile, &error))
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("The conversation was not saved"),
                              tr("%1. It stays on screen; check that the run folder is writable.").arg(error));
    m_conversationDirty = false;
}

} // namespace crucible::ui
