// Data page: what the model reads. The embedded Tiny Shakespeare or the
// user's own files and folders (buttons or drag and drop), the validation
// split, and the tokenizer: trained on a worker thread with a busy indicator,
// then measured (documents, bytes, tokens, split, bytes per token) and shown
// at work on any text typed into the preview, one coloured band per token.
#pragma once

#include "ui/workers/corpus_worker.h"
#include "ui/workers/worker_thread.h"

#include <QTimer>
#include <QWidget>

class QDoubleSpinBox;
class QLabel;
class QListWidget;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QStackedWidget;
class QTextEdit;

namespace crucible::ui {

class AppContext;
class MessageBanner;

class DataPage : public QWidget {
    Q_OBJECT
public:
    explicit DataPage(AppContext& context, QWidget* parent = nullptr);
    ~DataPage() override;

    // Adds files or folders to the corpus (what a drop does).
    void addPaths(const QStringList& paths);
    TokenizerPtr tokenizer() const { return m_tokenizer; }
    bool isAnalyzing() const { return m_activeRequest != 0; }

public slots:
    void analyze();
    void cancelAnalysis();

signals:
    void analysisFinished(bool ok);
    void analyzeRequested(const crucible::ui::CorpusRequest& request);   // to the worker

protected:
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;
    void showEvent(QShowEvent* event) override;

private:
    QWidget* buildCorpus();
    QWidget* buildPreview();
    void loadFromConfig();
    void setPaths(const QStringList& paths);
    void removeSelected();
    void markStale();
    void updatePreview();
    void setBusy(bool busy, const QString& stage = QString());
    void showStats(const CorpusStats& stats);

    AppContext& m_context;
    bool m_loading = false;
    CorpusWorker* m_worker;
    WorkerThread m_thread;   // after m_worker: it takes the worker onto the thread
    quint64 m_nextRequest = 1;
    quint64 m_activeRequest = 0;
    QString m_analyzedKey;   // the corpus and vocabulary the statistics describe
    QString m_statsInfo;     // what was measured, and how long it took
    TokenizerPtr m_tokenizer;
    QTimer m_previewTimer;

    MessageBanner* m_banner;
    QStackedWidget* m_listStack;
    QListWidget* m_paths;
    QPushButton* m_remove;
    QPushButton* m_useEmbedded;
    QDoubleSpinBox* m_valFraction;
    QSpinBox* m_vocab;
    QPushButton* m_analyze;
    QPushButton* m_cancel;
    QProgressBar* m_busy;
    QLabel* m_stage;
    QLabel* m_statsNote;
    QLabel* m_statDocuments;
    QLabel* m_statBytes;
    QLabel* m_statTokens;
    QLabel* m_statSplit;
    QLabel* m_statBytesPerToken;
    QLabel* m_statVocab;
    QPlainTextEdit* m_previewIn;
    QTextEdit* m_previewOut;
    QLabel* m_previewCaption;
};

} // namespace crucible::ui
