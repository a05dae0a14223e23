// CorpusWorker: reads a corpus, trains (or reuses) its tokenizer and tokenizes
// it, on its own thread, for the Data page's statistics and token preview.
//
// The work shares the trainer's caches, so a tokenizer trained here is the
// one a run then uses without training it again. SentencePiece cannot be
// interrupted mid-training, so cancel() takes effect at the next stage
// boundary; the page drops the answer of a cancelled request either way.
#pragma once

#include "core/data/tokenizer.h"

#include <QMetaType>
#include <QObject>
#include <QStringList>

#include <atomic>
#include <memory>

namespace crucible::ui {

struct CorpusRequest {
    quint64 id = 0;            // answers carry it, so stale ones are recognised
    QStringList paths;         // empty = the embedded corpus
    int vocabSize = 2048;
    double valFraction = 0.1;
    int seqLen = 0;
    QString cacheDir;
};

struct CorpusStats {
    QString description;
    int documents = 0;
    qint64 bytes = 0;
    qint64 trainTokens = 0;
    qint64 valTokens = 0;
    double bytesPerToken = 0.0;
    int vocabSize = 0;
    double seconds = 0.0;
    qint64 tokens() const { return trainTokens + valTokens; }
};

using TokenizerPtr = std::shared_ptr<const Tokenizer>;

class CorpusWorker : public QObject {
    Q_OBJECT
public:
    explicit CorpusWorker(QObject* parent = nullptr);

    void cancel() { m_cancel = true; }   // thread-safe

public slots:
    void analyze(const crucible::ui::CorpusRequest& request);

signals:
    void progress(quint64 id, const QString& stage);
    void finished(quint64 id, const crucible::ui::CorpusStats& stats, const crucible::ui::TokenizerPtr& tokenizer);
    void failed(quint64 id, const QString& message);
    void cancelled(quint64 id);

private:
    std::atomic<bool> m_cancel{false};
};

} // namespace crucible::ui

Q_DECLARE_METATYPE(crucible::ui::CorpusRequest)
Q_DECLARE_METATYPE(crucible::ui::CorpusStats)
Q_DECLARE_METATYPE(crucible::ui::TokenizerPtr)
