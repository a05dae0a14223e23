// Chat page: talk to a model you trained.
//
// Choose a run (the runs folder's, following the run last trained or opened,
// or any run or checkpoint folder), optionally a smaller draft model for
// speculative decoding, and the device. The model loads on a ChatWorker
// thread while a busy bar runs; the page never waits for it. A conversation
// is a plain-text transcript the model continues, in the format of
// `crucible-cli chat`; replies stream in token by token, with the prefill and
// decode speed (and the draft's acceptance rate) under each. Send, Stop
// (within one token), Regenerate, Copy and Clear act on it, and it is kept
// with the run in chat.json, saved after every reply. "Show alternatives"
// colours each token by its probability and lists what else the model
// weighed for the token under the mouse.
#pragma once

#include "core/train/run_catalog.h"
#include "ui/pages/chat_conversation.h"
#include "ui/workers/chat_worker.h"
#include "ui/workers/run_scanner.h"
#include "ui/workers/worker_thread.h"

#include <QStringList>
#include <QTimer>
#include <QWidget>

class QAction;
class QCheckBox;
class QComboBox;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QStackedWidget;

namespace crucible::ui {

class AppContext;
class ChatSettings;
class ChatTranscriptView;
class MessageBanner;
class ServePanel;
class TokenInspector;

class ChatPage : public QWidget {
    Q_OBJECT
public:
    enum class State { NoModel, Loading, Ready, Generating, Stopping, Failed };
    Q_ENUM(State)

    explicit ChatPage(AppContext& context, QWidget* parent = nullptr);
    // Stops a reply in progress (within one token) and waits for the worker.
    ~ChatPage() override;

    State state() const { return m_state; }
    ChatWorker* worker() const { return m_worker; }
    const ChatConversation& conversation() const { return m_conversation; }
    const ChatModelInfo& modelInfo() const { return m_info; }
    // The run or checkpoint folder chosen, and where its conversation is kept
    // (empty for a checkpoint folder outside a run).
    QString selectedPath() const { return m_selected; }
    QString conversationFile() const { return m_conversationFile; }

    QComboBox* runCombo() const { return m_runCombo; }
    QComboBox* draftCombo() const { return m_draftCombo; }
    QComboBox* deviceCombo() const { return m_deviceCombo; }
    QPlainTextEdit* input() const { return m_input; }
    QPushButton* sendButton() const { return m_send; }
    QPushButton* stopButton() const { return m_stop; }
    QPushButton* regenerateButton() const { return m_regenerate; }
    QPushButton* clearButton() const { return m_clear; }
    QAction* copyConversationAction() const { return m_copyConversation; }
    QAction* copyReplyAction() const { return m_copyReply; }
    QCheckBox* alternativesToggle() const { return m_alternatives; }
    // Shown for a fine-tune: off, the base answers instead of base + adapter.
    QCheckBox* adapterToggle() const { return m_adapter; }
    ServePanel* servePanel() const { return m_serve; }   // null when built without the server
    ChatTranscriptView* transcript() const { return m_transcript; }
    TokenInspector* inspector() const { return m_inspector; }
    MessageBanner* banner() const { return m_banner; }
    bool showsEmptyState() const;
    // True from a refresh until the run list shows the scan it asked for.
    bool scanningRuns() const { return m_scanner.busy(); }

    ChatSettings* settings() const { return m_settings; }
    // The sampling settings as the next reply will use them (before its seed offset).
    SamplingConfig sampling() const;
    int maxNewTokens() const;

public slots:
    void refreshRuns();   // scans on a worker thread; showRuns() follows
    void showRuns();
    // Chooses a run or checkpoint folder, as Browse does after its dialog.
    bool openPath(const QString& path);
    void browse();
    void send();
    void stop();
    void regenerate();
    void clear();
    void copyConversation();
    void copyLastReply();
    // Shows a token of the conversation in the inspector (what hovering does).
    void inspectToken(int turn, int index);

signals:
    void stateChanged(crucible::ui::ChatPage::State state);
    void tokensShown(int tokensInReply);
    void replyCompleted(const crucible::ui::ChatReply& reply);

    // To the worker.
    void loadRequested(const crucible::ui::ChatModelRequest& request);
    void unloadRequested();
    void generateRequested(const crucible::ui::ChatGenerateRequest& request);
    void adapterRequested(bool on);

protected:
    void showEvent(QShowEvent* event) override;
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    QWidget* buildModelBar();
    QWidget* buildEmptyState();
    QWidget* buildConversation();
    void rebuildDevices();
    // Switches to the run's conversation and loads its model; `retry` loads
    // again a model that failed before.
    void selectRun(const QString& path, bool retry = false);
    void requestLoad();
    void setState(State state);
    void updateControls();
    void startReply();
    void saveConversation();
    void conversationEdited();
    void onModelLoaded(const ChatModelInfo& info);
    void onModelFailed(quint64 id, const QString& message);
    void onTokens(quint64 id, const QVector<ChatToken>& tokens);
    void onReplyFinished(const ChatReply& reply);
    void onReplyFailed(quint64 id, const QString& message);

    AppContext& m_context;
    ChatWorker* m_worker;
    WorkerThread m_thread;   // after m_worker: it takes the worker onto the thread
    RunScanner m_scanner;
    State m_state = State::NoModel;

    std::vector<RunRecord> m_records;
    QStringList m_browsed;          // folders opened with Browse, this session
    QString m_selected;             // the run or checkpoint folder chosen
    QString m_follow;               // a run to select once it has a checkpoint (the one just trained)
    QString m_draftPath;
    QString m_conversationFile;
    ChatConversation m_conversation;
    ChatModelInfo m_info;
    ChatModelRequest m_loaded;      // what the worker holds (valid when Ready)
    quint64 m_loadId = 0;
    quint64 m_generationId = 0;
    bool m_loadPending = false;     // a load waits until the page is shown
    bool m_conversationDirty = false;
    QTimer m_saveTimer;

    MessageBanner* m_banner;
    QComboBox* m_runCombo;
    QPushButton* m_browse;
    QComboBox* m_draftCombo;
    QComboBox* m_deviceCombo;
    QProgressBar* m_busy;
    QLabel* m_modelStatus;
    QStackedWidget* m_stack;
    ChatTranscriptView* m_transcript;
    TokenInspector* m_inspector;
    QLabel* m_replyStats;
    QCheckBox* m_alternatives;
    QCheckBox* m_adapter;
    ServePanel* m_serve = nullptr;
    QPlainTextEdit* m_input;
    QPushButton* m_send;
    QPushButton* m_stop;
    QPushButton* m_regenerate;
    QPushButton* m_copy;
    QAction* m_copyConversation;
    QAction* m_copyReply;
    QPushButton* m_clear;
    ChatSettings* m_settings;
};

} // namespace crucible::ui
