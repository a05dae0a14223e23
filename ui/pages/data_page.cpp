#include "ui/pages/data_page.h"

#include "ui/app_context.h"
#include "ui/format.h"
#include "ui/icons.h"
#include "ui/models/run_config_model.h"
#include "ui/theme.h"
#include "ui/widgets/form_helpers.h"
#include "ui/widgets/message_banner.h"
#include "ui/workers/training_controller.h"

#include <QDoubleSpinBox>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGridLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QMimeData>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStackedWidget>
#include <QTextCursor>
#include <QTextEdit>
#include <QVBoxLayout>

namespace crucible::ui {

namespace {

// Longer text is cut: the preview is for looking, and must stay instant.
constexpr int kPreviewLimit = 20000;

const char* kSampleText =
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "Tokenizers split text into pieces: common words stay whole, rare ones break apart — "
    "and characters it never saw, like λ or ж, fall back to <0x..> byte pieces.";

QLabel* statValue(QWidget* parent, const char* name)
{
    auto* l = new QLabel(QStringLiteral("–"), parent);
    l->setObjectName(QString::fromLatin1(name));
    l->setProperty("role", "metric");
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    return l;
}

} // namespace

DataPage::DataPage(AppContext& context, QWidget* parent)
    : QWidget(parent), m_context(context), m_worker(new CorpusWorker), m_thread(m_worker, QStringLiteral("corpus"))
{
    setAcceptDrops(true);
    connect(this, &DataPage::analyzeRequested, m_worker, &CorpusWorker::analyze, Qt::QueuedConnection);
    connect(m_worker, &CorpusWorker::progress, this, [this](quint64 id, const QString& stage) {
        if (id == m_activeRequest) setBusy(true, stage);
    }, Qt::QueuedConnection);
    connect(m_worker, &CorpusWorker::finished, this,
            [this](quint64 id, const CorpusStats& stats, const TokenizerPtr& tokenizer) {
                if (id != m_activeRequest) return;
                m_activeRequest = 0;
                setBusy(false);
                m_tokenizer = tokenizer;
                showStats(stats);
                updatePreview();
                emit analysisFinished(true);
            }, Qt::QueuedConnection);
    connect(m_worker, &CorpusWorker::failed, this, [this](quint64 id, const QString& message) {
        if (id != m_activeRequest) return;
        m_activeRequest = 0;
        setBusy(false);
        m_banner->showMessage(MessageBanner::Kind::Error, tr("The corpus could not be prepared"), message);
        emit analysisFinished(false);
    }, Qt::QueuedConnection);
    connect(m_worker, &CorpusWorker::cancelled, this, [this](quint64 id) {
        if (id == m_activeRequest) {
            m_activeRequest = 0;
            setBusy(false);
        }
    }, Qt::QueuedConnection);

    auto* outer = new QVBoxLayout(this);
    outer->setContentsMargins(20, 16, 20, 16);
    addPageHeader(outer, tr("Data"),
                  tr("Train on the embedded Tiny Shakespeare or on your own text files; see how the tokenizer cuts it."));
    m_banner = new MessageBanner(this);
    m_banner->setObjectName(QStringLiteral("dataBanner"));
    outer->addWidget(m_banner);
    auto* columns = new QHBoxLayout;
    columns->setSpacing(16);
    columns->addWidget(buildCorpus(), 5);
    columns->addWidget(buildPreview(), 6);
    outer->addLayout(columns, 1);

    m_previewTimer.setSingleShot(true);
    m_previewTimer.setInterval(120);
    connect(&m_previewTimer, &QTimer::timeout, this, &DataPage::updatePreview);
    connect(context.config(), &RunConfigModel::configChanged, this, [this] {
        if (!m_loading) loadFromConfig();
        markStale();
    });
    loadFromConfig();
    updatePreview();
}

DataPage::~DataPage()
{
    // A tokenizer being trained finishes its current stage first: SentencePiece
    // cannot be interrupted, and the thread must not be killed.
    m_worker->cancel();   // then m_thread quits and waits
}

QWidget* DataPage::buildCorpus()
{
    auto* column = new QWidget;
    auto* layout = new QVBoxLayout(column);
    layout->setContentsMargins(0, 0, 0, 0);

    auto* corpus = new QGroupBox(tr("Corpus"), column);
    auto* c = new QVBoxLayout(corpus);
    m_listStack = new QStackedWidget(corpus);
    auto* empty = new QLabel(tr("<b>Tiny Shakespeare</b> (embedded, 1.1 MB) is used.<br><br>"
                                "Drop text files or folders here, or use the buttons below, to train on your own "
                                "text. Folders are read recursively; files that are not text are refused with "
                                "their name."),
                             m_listStack);
    empty->setObjectName(QStringLiteral("corpusEmptyState"));
    empty->setWordWrap(true);
    empty->setAlignment(Qt::AlignCenter);
    empty->setStyleSheet(QStringLiteral("QLabel { color: #4b5563; border: 2px dashed #d1d5db; border-radius: 8px;"
                                        " padding: 18px; background: #fafbfc; }"));
    m_paths = new QListWidget(m_listStack);
    m_paths->setObjectName(QStringLiteral("pathList"));
    m_paths->setSelectionMode(QAbstractItemView::ExtendedSelection);
    m_listStack->addWidget(empty);
    m_listStack->addWidget(m_paths);
    m_listStack->setMinimumHeight(150);
    m_listStack->setMaximumHeight(240);
    c->addWidget(m_listStack, 1);

    auto* buttons = new QHBoxLayout;
    auto* addFiles = new QPushButton(icons::glyph(QStringLiteral("add"), theme::text()), tr("Add files…"), corpus);
    addFiles->setObjectName(QStringLiteral("addFilesButton"));
    auto* addFolder = new QPushButton(icons::glyph(QStringLiteral("folder"), theme::text()), tr("Add folder…"), corpus);
    addFolder->setObjectName(QStringLiteral("addFolderButton"));
    m_remove = new QPushButton(icons::glyph(QStringLiteral("remove"), theme::text()), tr("Remove"), corpus);
    m_remove->setObjectName(QStringLiteral("removePathButton"));
    m_useEmbedded = new QPushButton(tr("Use Tiny Shakespeare"), corpus);
    m_useEmbedded->setObjectName(QStringLiteral("useEmbeddedButton"));
    m_useEmbedded->setToolTip(tr("Remove every file and train on the embedded corpus"));
    buttons->addWidget(addFiles);
    buttons->addWidget(addFolder);
    buttons->addWidget(m_remove);
    buttons->addStretch(1);
    buttons->addWidget(m_useEmbedded);
    c->addLayout(buttons);

    auto* split = new QFormLayout;
    m_valFraction = new QDoubleSpinBox(corpus);
    m_valFraction->setObjectName(QStringLiteral("valFractionSpin"));
    m_valFraction->setRange(0.0, 0.9);
    m_valFraction->setDecimals(3);
    m_valFraction->setSingleStep(0.01);
    m_valFraction->setKeyboardTracking(false);
    m_valFraction->setMaximumWidth(140);
    m_valFraction->setToolTip(tr("The tail of every document held out for validation; no validation window overlaps "
                                 "training text"));
    split->addRow(tr("Validation share"), m_valFraction);
    c->addLayout(split);
    layout->addWidget(corpus);

    connect(addFiles, &QPushButton::clicked, this, [this] {
        QSettings settings;
        const QStringList files = QFileDialog::getOpenFileNames(
            this, tr("Add text files"), settings.value(QStringLiteral("data/lastDir"), QDir::homePath()).toString(),
            tr("Text (*.txt *.md *.rst *.tex *.html *.csv *.json *.py *.cpp *.h *.c);;All files (*)"));
        if (files.isEmpty()) return;
        settings.setValue(QStringLiteral("data/lastDir"), QFileInfo(files.front()).absolutePath());
        addPaths(files);
    });
    connect(addFolder, &QPushButton::clicked, this, [this] {
        QSettings settings;
        const QString dir = QFileDialog::getExistingDirectory(
            this, tr("Add a folder of text"), settings.value(QStringLiteral("data/lastDir"), QDir::homePath()).toString());
        if (dir.isEmpty()) return;
        settings.setValue(QStringLiteral("data/lastDir"), dir);
        addPaths({dir});
    });
    connect(m_remove, &QPushButton::clicked, this, &DataPage::removeSelected);
    connect(m_useEmbedded, &QPushButton::clicked, this, [this] { setPaths({}); });
    connect(m_paths, &QListWidget::itemSelectionChanged, this,
            [this] { m_remove->setEnabled(!m_paths->selectedItems().isEmpty()); });
    connect(m_valFraction, &QDoubleSpinBox::valueChanged, this, [this](double v) {
        if (m_loading) return;
        DataConfig d = m_context.config()->config().data;
        d.val_fraction = v;
        m_loading = true;
        m_context.config()->setData(d);
        m_loading = false;
    });

    auto* tokenizer = new QGroupBox(tr("Tokenizer"), column);
    auto* t = new QVBoxLayout(tokenizer);
    auto* vocabRow = new QHBoxLayout;
    m_vocab = makeSpin(tokenizer, "dataVocabSpin", 0, 1 << 20,
                       tr("SentencePiece BPE with byte fallback, trained on this corpus; the model's vocabulary size"));
    m_vocab->setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Fixed);
    m_analyze = new QPushButton(tr("Train tokenizer and measure"), tokenizer);
    m_analyze->setObjectName(QStringLiteral("analyzeButton"));
    m_cancel = new QPushButton(tr("Cancel"), tokenizer);
    m_cancel->setObjectName(QStringLiteral("cancelAnalyzeButton"));
    m_cancel->setToolTip(tr("Stops after the current stage; the tokenizer library cannot be interrupted mid-training"));
    m_cancel->hide();
    vocabRow->addWidget(new QLabel(tr("Vocabulary"), tokenizer));
    vocabRow->addWidget(m_vocab);
    vocabRow->addStretch(1);
    vocabRow->addWidget(m_analyze);
    vocabRow->addWidget(m_cancel);
    t->addLayout(vocabRow);
    auto* busyRow = new QHBoxLayout;
    m_busy = new QProgressBar(tokenizer);
    m_busy->setObjectName(QStringLiteral("analyzeBusy"));
    m_busy->setRange(0, 0);   // busy: the stages have no measurable progress
    m_busy->setMaximumHeight(6);
    m_busy->setTextVisible(false);
    m_busy->hide();
    m_stage = makeNote(QString(), tokenizer);
    m_stage->setObjectName(QStringLiteral("analyzeStage"));
    busyRow->addWidget(m_busy, 1);
    t->addLayout(busyRow);
    t->addWidget(m_stage);

    auto* grid = new QGridLayout;
    grid->setHorizontalSpacing(24);
    grid->setVerticalSpacing(0);
    m_statDocuments = statValue(tokenizer, "statDocuments");
    m_statBytes = statValue(tokenizer, "statBytes");
    m_statTokens = statValue(tokenizer, "statTokens");
    m_statSplit = statValue(tokenizer, "statSplit");
    m_statBytesPerToken = statValue(tokenizer, "statBytesPerToken");
    m_statVocab = statValue(tokenizer, "statVocab");
    const std::pair<QLabel*, QString> cells[] = {
        {m_statDocuments, tr("documents")}, {m_statBytes, tr("of text")},        {m_statTokens, tr("tokens")},
        {m_statSplit, tr("train / validation tokens")}, {m_statBytesPerToken, tr("bytes per token")},
        {m_statVocab, tr("vocabulary")},
    };
    for (int i = 0; i < 6; ++i) {
        const int row = (i / 3) * 2, col = i % 3;
        grid->addWidget(cells[i].first, row, col);
        auto* caption = makeNote(cells[i].second, tokenizer);
        caption->setContentsMargins(0, 0, 0, 10);
        grid->addWidget(caption, row + 1, col);
    }
    t->addSpacing(6);
    t->addLayout(grid);
    m_statsNote = makeNote(QString(), tokenizer);
    m_statsNote->setObjectName(QStringLiteral("statsNote"));
    t->addWidget(m_statsNote);
    layout->addWidget(tokenizer);
    layout->addStretch(1);

    connect(m_vocab, &QSpinBox::valueChanged, this, [this](int v) {
        if (m_loading) return;
        ModelConfig m = m_context.config()->config().model;
        m.vocab_size = v;
        m_context.config()->setModel(m);
    });
    connect(m_analyze, &QPushButton::clicked, this, &DataPage::analyze);
    connect(m_cancel, &QPushButton::clicked, this, &DataPage::cancelAnalysis);
    return column;
}

QWidget* DataPage::buildPreview()
{
    auto* box = new QGroupBox(tr("Tokenization preview"));
    auto* layout = new QVBoxLayout(box);
    layout->addWidget(makeNote(tr("Type or paste any text. Each coloured band is one token; hover a token for its id "
                                  "and piece. Red pieces are raw bytes (<0x..>): text the vocabulary has no piece for."),
                               box));
    m_previewIn = new QPlainTextEdit(box);
    m_previewIn->setObjectName(QStringLiteral("previewInput"));
    m_previewIn->setPlaceholderText(tr("Type text to see its tokens"));
    m_previewIn->setPlainText(QString::fromUtf8(kSampleText));
    m_previewIn->setMaximumHeight(130);
    m_previewOut = new QTextEdit(box);
    m_previewOut->setObjectName(QStringLiteral("previewOutput"));
    m_previewOut->setReadOnly(true);
    QFont mono(QStringLiteral("DejaVu Sans Mono"));
    mono.setStyleHint(QFont::Monospace);
    mono.setPointSizeF(font().pointSizeF() + 0.5);
    m_previewOut->setFont(mono);
    m_previewCaption = makeNote(QString(), box);
    m_previewCaption->setObjectName(QStringLiteral("previewCaption"));
    layout->addWidget(m_previewIn);
    layout->addWidget(m_previewOut, 1);
    layout->addWidget(m_previewCaption);
    connect(m_previewIn, &QPlainTextEdit::textChanged, this, [this] { m_previewTimer.start(); });
    return box;
}

void DataPage::loadFromConfig()
{
    m_loading = true;
    const RunConfig& c = m_context.config()->config();
    m_paths->clear();
    for (const auto& p : c.data.paths) {
        auto* item = new QListWidgetItem(qs(p), m_paths);
        const QFileInfo info(qs(p));
        item->setIcon(icons::glyph(info.isDir() ? QStringLiteral("folder") : QStringLiteral("data"), theme::mutedText()));
        if (!info.exists()) {
            item->setForeground(theme::danger());
            item->setToolTip(tr("Not found: remove it or restore the file"));
        }
    }
    m_listStack->setCurrentIndex(c.data.paths.empty() ? 0 : 1);
    m_remove->setEnabled(!m_paths->selectedItems().isEmpty());
    m_useEmbedded->setEnabled(!c.data.paths.empty());
    m_valFraction->setValue(c.data.val_fraction);
    m_vocab->setValue(c.model.vocab_size);
    m_loading = false;
}

void DataPage::setPaths(const QStringList& paths)
{
    DataConfig d = m_context.config()->config().data;
    d.paths.clear();
    for (const QString& p : paths) d.paths.push_back(p.toStdString());
    m_context.config()->setData(d);
}

void DataPage::addPaths(const QStringList& paths)
{
    QStringList current;
    for (const auto& p : m_context.config()->config().data.paths) current << qs(p);
    QStringList missing;
    for (const QString& raw : paths) {
        const QFileInfo info(raw);
        if (!info.exists()) {
            missing << raw;
            continue;
        }
        const QString path = info.absoluteFilePath();
        if (!current.contains(path)) current << path;
    }
    if (!missing.isEmpty())
        m_banner->showMessage(MessageBanner::Kind::Warning, tr("Some paths were not added"),
                              tr("Not found: %1").arg(missing.join(QStringLiteral(", "))));
    setPaths(current);
}

void DataPage::removeSelected()
{
    QStringList keep;
    for (int i = 0; i < m_paths->count(); ++i)
        if (!m_paths->item(i)->isSelected()) keep << m_paths->item(i)->text();
    setPaths(keep);
}

void DataPage::dragEnterEvent(QDragEnterEvent* event)
{
    if (event->mimeData()->hasUrls()) event->acceptProposedAction();
}

void DataPage::dropEvent(QDropEvent* event)
{
    QStringList paths;
    for (const QUrl& url : event->mimeData()->urls())
        if (url.isLocalFile()) paths << url.toLocalFile();
    if (paths.isEmpty()) return;
    addPaths(paths);
    event->acceptProposedAction();
}

void DataPage::showEvent(QShowEvent* event)
{
    QWidget::showEvent(event);
    // First visit: measure the corpus right away, unless a run is using the CPU.
    if (!m_tokenizer && !isAnalyzing() && !m_context.training()->isActive()) analyze();
}

void DataPage::analyze()
{
    const RunConfig& c = m_context.config()->config();
    m_banner->clear();
    CorpusRequest request;
    request.id = m_nextRequest++;
    for (const auto& p : c.data.paths) request.paths << qs(p);
    request.vocabSize = c.model.vocab_size;
    request.valFraction = c.data.val_fraction;
    request.seqLen = c.train.resolved_seq_len(c.model);
    request.cacheDir = m_context.cacheDir();
    if (request.vocabSize < 260) {
        m_banner->showMessage(MessageBanner::Kind::Error, tr("The vocabulary is too small"),
                              tr("A vocabulary needs at least 260 tokens: 256 byte pieces, <unk>, <s> and </s>, "
                                 "and room for merges. A few thousand is typical."));
        return;
    }
    m_activeRequest = request.id;
    m_analyzedKey = QString::fromUtf8(QByteArray::fromStdString(to_json(c.data).dump())) + QString::number(request.vocabSize);
    setBusy(true, tr("Starting"));
    emit analyzeRequested(request);
}

void DataPage::cancelAnalysis()
{
    if (!isAnalyzing()) return;
    m_worker->cancel();
    m_activeRequest = 0;   // whatever comes back now is dropped
    m_analyzedKey.clear();
    setBusy(false);
    m_stage->setText(tr("Cancelled."));
}

void DataPage::setBusy(bool busy, const QString& stage)
{
    m_busy->setVisible(busy);
    m_cancel->setVisible(busy);
    m_analyze->setEnabled(!busy);
    m_stage->setText(busy ? stage + QStringLiteral("…") : QString());
}

void DataPage::markStale()
{
    const RunConfig& c = m_context.config()->config();
    const QString key =
        QString::fromUtf8(QByteArray::fromStdString(to_json(c.data).dump())) + QString::number(c.model.vocab_size);
    if (m_tokenizer && key != m_analyzedKey)
        m_statsNote->setText(QStringLiteral("<span style='color:%1'>%2</span>")
                                 .arg(theme::warning().name(),
                                      tr("The corpus or vocabulary changed since these numbers were measured: train "
                                         "the tokenizer again to update them.")));
    else
        m_statsNote->setText(m_statsInfo);
}

void DataPage::showStats(const CorpusStats& s)
{
    const QLocale locale;
    m_statDocuments->setText(locale.toString(s.documents));
    m_statBytes->setText(formatBytes(double(s.bytes)));
    m_statTokens->setText(formatCount(double(s.tokens())));
    m_statTokens->setToolTip(locale.toString(s.tokens()));
    m_statSplit->setText(QStringLiteral("%1 / %2").arg(formatCount(double(s.trainTokens)), formatCount(double(s.valTokens))));
    m_statBytesPerToken->setText(QString::number(s.bytesPerToken, 'f', 2));
    m_statVocab->setText(locale.toString(s.vocabSize));
    m_statsInfo = tr("%1, measured in %2. The tokenizer is cached: runs on this corpus reuse it.")
                      .arg(s.description, formatDuration(s.seconds));
    markStale();
}

void DataPage::updatePreview()
{
    if (!m_tokenizer) {
        m_previewOut->clear();
        m_previewCaption->setText(tr("The preview appears once the tokenizer is trained."));
        return;
    }
    static const QColor bands[] = {QColor(0xfd, 0xe6, 0x8a), QColor(0xbf, 0xdb, 0xfe), QColor(0xbb, 0xf7, 0xd0),
                                   QColor(0xfb, 0xcf, 0xe8), QColor(0xdd, 0xd6, 0xfe)};
    const QString input = m_previewIn->toPlainText();
    const QByteArray utf8 = input.left(kPreviewLimit).toUtf8();
    const std::vector<int32_t> ids = m_tokenizer->encode(std::string_view(utf8.constData(), size_t(utf8.size())));

    m_previewOut->clear();
    QTextCursor cursor(m_previewOut->document());
    cursor.beginEditBlock();
    int64_t byteTokens = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        const std::string& bytes = m_tokenizer->token_bytes(id);
        const bool bytePiece = m_tokenizer->is_byte_piece(id);
        const QString piece = qs(m_tokenizer->piece(id));
        QString shown;
        bool newline = false;
        if (bytes == "\n") {
            shown = QStringLiteral("↵");
            newline = true;
        } else if (bytes == "\t") {
            shown = QStringLiteral("→");
        } else if (bytePiece && static_cast<unsigned char>(bytes[0]) >= 0x80) {
            shown = piece;   // one byte of a character the vocabulary lacks: <0xF0>
        } else {
            shown = QString::fromUtf8(bytes.data(), qsizetype(bytes.size()));
        }
        byteTokens += bytePiece ? 1 : 0;
        QTextCharFormat format;
        format.setBackground(bands[i % std::size(bands)]);
        if (bytePiece) format.setForeground(theme::danger());
        format.setToolTip(tr("token %1 of %2\nid %3\npiece %4\n%5 byte(s)")
                              .arg(i + 1)
                              .arg(ids.size())
                              .arg(id)
                              .arg(piece)
                              .arg(bytes.size()));
        cursor.insertText(shown, format);
        if (newline) cursor.insertText(QStringLiteral("\n"), QTextCharFormat());
    }
    cursor.endEditBlock();
    const double perToken = ids.empty() ? 0.0 : double(utf8.size()) / double(ids.size());
    QString caption = tr("%1 tokens for %2 bytes: %3 bytes per token").arg(ids.size()).arg(utf8.size()).arg(perToken, 0, 'f', 2);
    if (byteTokens > 0) caption += tr(", %1 byte pieces").arg(byteTokens);
    if (input.size() > kPreviewLimit) caption += tr(" (first %1 characters shown)").arg(kPreviewLimit);
    m_previewCaption->setText(caption + QLatin1Char('.'));
}

} // namespace crucible::ui
