#include "ui/workers/corpus_worker.h"

#include "core/data/corpus.h"
#include "core/data/dataset.h"
#include "core/util/paths.h"
#include "kernels/error.h"

#include <QElapsedTimer>
#include <QLocale>

#include <filesystem>

namespace crucible::ui {

CorpusWorker::CorpusWorker(QObject* parent) : QObject(parent)
{
    qRegisterMetaType<crucible::ui::CorpusRequest>();
    qRegisterMetaType<crucible::ui::CorpusStats>();
    qRegisterMetaType<crucible::ui::TokenizerPtr>();
}

void CorpusWorker::analyze(const CorpusRequest& request)
{
    m_cancel = false;
    QElapsedTimer clock;
    clock.start();
    const std::filesystem::path cache =
        request.cacheDir.isEmpty() ? default_cache_dir() : std::filesystem::path(request.cacheDir.toStdString());
    try {
        emit progress(request.id, tr("Reading the text"));
        std::vector<std::filesystem::path> paths;
        for (const QString& p : request.paths) paths.emplace_back(p.toStdString());
        const Corpus corpus = paths.empty() ? Corpus::embedded_default() : Corpus::from_paths(paths);
        if (m_cancel) {
            emit cancelled(request.id);
            return;
        }
        emit progress(request.id, tr("Training the tokenizer (vocabulary %1)").arg(QLocale().toString(request.vocabSize)));
        TokenizerOptions options;
        options.vocab_size = request.vocabSize;
        // The same tokenizer the trainer will train (and cache): training text only.
        auto tokenizer = std::make_shared<Tokenizer>(Tokenizer::train_cached(
            tokenizer_training_text(corpus, request.valFraction), options, cache / "tokenizers"));
        if (m_cancel) {
            emit cancelled(request.id);
            return;
        }
        emit progress(request.id, tr("Tokenizing %1").arg(QString::fromStdString(corpus.description())));
        const Dataset data = Dataset::build(corpus, *tokenizer, request.valFraction, cache / "tokens", request.seqLen);
        CorpusStats stats;
        stats.description = QString::fromStdString(corpus.description());
        stats.documents = int(corpus.documents().size());
        stats.bytes = corpus.bytes();
        stats.trainTokens = data.train_tokens();
        stats.valTokens = data.val_tokens();
        stats.bytesPerToken = data.bytes_per_token();
        stats.vocabSize = tokenizer->vocab_size();
        stats.seconds = clock.elapsed() / 1000.0;
        emit finished(request.id, stats, tokenizer);
    } catch (const Error& e) {
        emit failed(request.id, QString::fromUtf8(e.what()));
    } catch (const std::exception& e) {
        emit failed(request.id, tr("Unexpected error: %1").arg(QString::fromUtf8(e.what())));
    }
}

} // namespace crucible::ui
