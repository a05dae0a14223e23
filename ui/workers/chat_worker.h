// ChatWorker: the Chat page's model, on its own QThread.
//
// The worker owns everything that touches the engine: the backend, the loaded
// model (and an optional draft model for speculative decoding), the KV-cached
// Generator and the token-level transcript of the conversation. Requests come
// in through queued signals (loadModel, generate); results go out through
// signals that the page receives queued on the GUI thread. Tokens are sent in
// batches, at most ~30 a second, so a fast model never floods the event loop.
//
// generate() blocks the worker's thread for the whole reply, so a queued
// "stop" could not arrive before the reply ends. requestStop() is therefore a
// thread-safe method: it raises a flag the token callback reads, and asks the
// Generator to cancel, which ends the reply within one token.
#pragma once

#include "core/generate/sampler.h"
#include "ui/workers/batch_throttle.h"

#include <QMetaType>
#include <QObject>
#include <QPair>
#include <QString>
#include <QVector>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

namespace crucible {
class ChatTranscript;
class Generator;
class ParamStore;
struct LoadedModel;
struct TokenEvent;
}

namespace crucible::ui {

struct ChatModelRequest {
    quint64 id = 0;
    QString path;            // a run directory or a checkpoint folder
    QString draftPath;       // empty: no speculative decoding
    QString device = QStringLiteral("cpu");   // "cpu" or "cuda:N"
};

struct ChatModelInfo {
    quint64 id = 0;
    QString path;
    QString checkpoint;
    qint64 step = 0;
    QString device;          // as the backend names it
    qint64 parameters = 0;
    int context = 0;         // tokens the model sees at once
    int vocabulary = 0;
    qint64 cacheBytes = 0;   // KV caches and generation buffers
    QString draftPath;       // empty when no draft is in use
    qint64 draftParameters = 0;
    QString draftProblem;    // why the draft was not used, when one was asked for
    // A fine-tune: its adapters are merged into the weights, and the base's
    // own weights are kept beside them, so the adapter switches off at once.
    bool hasAdapter = false;
    bool adapterEnabled = false;
    QString adapter;         // "LoRA r16 on q, k, v, o"
    QString base;            // the base model's path
};

struct ChatTurnText {
    QString message, reply;
};

struct ChatGenerateRequest {
    quint64 id = 0;
    QString system, userPrefix, assistantPrefix;
    QVector<ChatTurnText> history;   // the finished turns before this one
    QString message;
    SamplingConfig sampling;
    int maxNewTokens = 256;
    bool stopAtBlankLine = true;     // ChatStopRules, for a plain-text model
    bool stopAtSpeaker = true;
    int alternatives = 5;            // the most likely tokens reported with each one
};

// One generated token as the transcript shows it.
struct ChatToken {
    QString text;            // what to show now (may be empty, or hold bytes held back before)
    QString piece;           // the token itself, readable ("·the", "↵")
    float probability = 0.0f;
    QVector<QPair<QString, float>> alternatives;   // most likely first
};

struct ChatReply {
    quint64 id = 0;
    QString text;            // the whole reply, up to a stop string
    QString stopReason;      // "length", "eos", "stop string", "cancelled", "context full"
    qint64 promptTokens = 0;     // run in the prefill (the rest came from the cache)
    qint64 generatedTokens = 0;
    double prefillTokensPerSecond = 0.0;
    double decodeTokensPerSecond = 0.0;
    qint64 draftProposed = 0;
    qint64 draftAccepted = 0;
    int forgottenTurns = 0;      // oldest turns the model no longer sees
    int context = 0;
    QString answeredBy;          // a fine-tune's: "adapter on" or "adapter off (base alone)"; else empty
};

// Registers the types above once; safe to call repeatedly.
void registerChatMetaTypes();

// A token's bytes as a person can read them: spaces as "·", newlines as "↵",
// tabs as "⇥", bytes that are no text as <0xNN>.
QString readableToken(const std::string& bytes);

class ChatWorker : public QObject {
    Q_OBJECT
public:
    explicit ChatWorker(QObject* parent = nullptr);
    ~ChatWorker() override;

    // Thread-safe, called from the GUI thread. prepare() before each request
    // forgets a stop meant for the previous reply.
    void prepare();
    void requestStop();
    // Shortest gap between two token batches (default 33 ms: ≤ 30 per second).
    void setUpdateInterval(std::chrono::milliseconds interval) { m_tokens.setInterval(interval); }

public slots:
    void loadModel(const crucible::ui::ChatModelRequest& request);
    void unloadModel();
    void generate(const crucible::ui::ChatGenerateRequest& request);
    // A fine-tune answers with its adapters (merged) or as its base did.
    void setAdapterEnabled(bool on);

signals:
    void adapterChanged(bool enabled);
    void modelLoaded(const crucible::ui::ChatModelInfo& info);
    void modelFailed(quint64 id, const QString& message);
    void tokensReady(quint64 id, const QVector<crucible::ui::ChatToken>& tokens);
    void replyFinished(const crucible::ui::ChatReply& reply);
    void replyFailed(quint64 id, const QString& message);

private:
    void releaseModel();
    void syncTranscript(const ChatGenerateRequest& request);
    ChatToken toChatToken(const TokenEvent& e) const;

    std::unique_ptr<LoadedModel> m_model;
    std::unique_ptr<LoadedModel> m_draft;
    std::unique_ptr<Generator> m_generator;          // guarded by m_mutex (requestStop reads it)
    // A fine-tune's base weights and their generator (each keeps its own KV
    // cache, so switching costs nothing); guarded by m_mutex like m_generator.
    std::unique_ptr<ParamStore> m_baseParams;
    std::unique_ptr<Generator> m_baseGenerator;
    bool m_adapterOn = true;
    std::unique_ptr<ChatTranscript> m_transcript;
    QString m_modelKey, m_draftKey;                   // what is loaded: path and device
    ChatModelInfo m_info;

    std::mutex m_mutex;
    std::atomic<bool> m_stop{false};
    quint64 m_replyId = 0;                           // the request the tokens belong to
    BatchThrottle<ChatToken> m_tokens;
};

} // namespace crucible::ui

Q_DECLARE_METATYPE(crucible::ui::ChatModelRequest)
Q_DECLARE_METATYPE(crucible::ui::ChatModelInfo)
Q_DECLARE_METATYPE(crucible::ui::ChatGenerateRequest)
Q_DECLARE_METATYPE(crucible::ui::ChatToken)
Q_DECLARE_METATYPE(crucible::ui::ChatReply)
