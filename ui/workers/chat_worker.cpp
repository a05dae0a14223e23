#include "ui/workers/chat_worker.h"

#include "core/generate/chat_stop_rules.h"
#include "core/generate/chat_transcript.h"
#include "core/generate/generator.h"
#include "core/model/model_config.h"
#include "core/train/finetune.h"
#include "core/train/load_model.h"
#include "kernels/error.h"

#include <QStringDecoder>

#include <new>

namespace crucible::ui {

namespace {

// The speculative lookahead: four draft tokens per step suit the small draft
// models a playground trains: they agree with their target too rarely for
// longer proposals to pay off.
constexpr int kLookahead = 4;

QString fromUtf8(const std::string& s) { return QString::fromUtf8(s.data(), qsizetype(s.size())); }

BackendOptions backendFor(const QString& device)
{
    BackendOptions o;
    if (device.startsWith(QLatin1String("cuda"))) {
        o.device = DeviceKind::cuda;
        const int colon = device.indexOf(QLatin1Char(':'));
        if (colon > 0) o.cuda_device = device.mid(colon + 1).toInt();
    }
    return o;
}

// Engine errors already say what failed; memory errors also need to say what to do.
QString describe(const std::exception& e, const QString& doing)
{
    if (dynamic_cast<const std::bad_alloc*>(&e))
        return QObject::tr("Out of memory %1. Close other programs, choose a smaller model, or another device.").arg(doing);
    QString message = QString::fromUtf8(e.what());
    if (message.contains(QLatin1String("out of memory"), Qt::CaseInsensitive))
        message += QObject::tr(" The device is full: choose the CPU, a smaller model, or free the GPU.");
    return message;
}

// As the tokenizer's byte pieces are written: <0x0A>.
QString byteName(unsigned value)
{
    return QStringLiteral("<0x%1>").arg(QString::number(value, 16).toUpper().rightJustified(2, QLatin1Char('0')));
}

} // namespace

void registerChatMetaTypes()
{
    qRegisterMetaType<crucible::ui::ChatModelRequest>();
    qRegisterMetaType<crucible::ui::ChatModelInfo>();
    qRegisterMetaType<crucible::ui::ChatGenerateRequest>();
    qRegisterMetaType<crucible::ui::ChatToken>();
    qRegisterMetaType<crucible::ui::ChatReply>();
    qRegisterMetaType<QVector<crucible::ui::ChatToken>>();
}

QString readableToken(const std::string& bytes)
{
    QStringDecoder decode(QStringDecoder::Utf8);
    const QString text = decode(QByteArrayView(bytes.data(), qsizetype(bytes.size())));
    QString out;
    if (decode.hasError()) {
        // Part of a character (a byte-fallback piece): show the raw bytes.
        for (unsigned char c : bytes) out += byteName(c);
        return out;
    }
    for (const QChar c : text) {
        if (c == QLatin1Char(' ')) out += QChar(0x00B7);
        else if (c == QLatin1Char('\n')) out += QChar(0x21B5);
        else if (c == QLatin1Char('\t')) out += QChar(0x21E5);
        else if (c.unicode() < 0x20 || c.unicode() == 0x7f) out += byteName(c.unicode());
        else out += c;
    }
    return out;
}

ChatWorker::ChatWorker(QObject* parent)
    : QObject(parent), m_tokens([this](const QVector<ChatToken>& batch) { emit tokensReady(m_replyId, batch); })
{
    registerChatMetaTypes();
}

ChatWorker::~ChatWorker() { releaseModel(); }

void ChatWorker::prepare() { m_stop.store(false); }

void ChatWorker::requestStop()
{
    m_stop.store(true);
    std::lock_guard lock(m_mutex);
    if (m_generator) m_generator->request_cancel();
    if (m_baseGenerator) m_baseGenerator->request_cancel();
}

void ChatWorker::releaseModel()
{
    {
        std::lock_guard lock(m_mutex);
        m_generator.reset();   // before the models it points into
        m_baseGenerator.reset();
    }
    m_baseParams.reset();
    m_transcript.reset();
    m_draft.reset();
    m_model.reset();
    m_modelKey.clear();
    m_draftKey.clear();
    m_info = ChatModelInfo{};
}

void ChatWorker::unloadModel() { releaseModel(); }

void ChatWorker::setAdapterEnabled(bool on)
{
    m_adapterOn = on;
    m_info.adapterEnabled = on && m_baseGenerator;
    emit adapterChanged(m_info.adapterEnabled);
}

void ChatWorker::loadModel(const ChatModelRequest& request)
{
    ChatModelInfo info;
    info.id = request.id;
    info.path = request.path;
    const QString key = request.path + QLatin1Char('|') + request.device;
    try {
        const BackendOptions backend = backendFor(request.device);
        if (!m_model || key != m_modelKey) {
            releaseModel();
            m_model = std::make_unique<LoadedModel>(load_model(request.path.toStdString(), backend));
            m_modelKey = key;
        } else {
            // The same model with another draft: keep the weights, rebuild the rest.
            std::lock_guard lock(m_mutex);
            m_generator.reset();
            m_baseGenerator.reset();
        }
        m_draft.reset();
        m_transcript.reset();

        auto generator = std::make_unique<Generator>(*m_model->params, m_model->tokenizer, 1, m_model->config.seq_len);
        if (!request.draftPath.isEmpty()) {
            // A draft that cannot serve leaves the model usable without it.
            try {
                auto draft = std::make_unique<LoadedModel>(load_model(request.draftPath.toStdString(), backend));
                if (draft->tokenizer.fingerprint() != m_model->tokenizer.fingerprint())
                    throw Error("the draft model was trained with another tokenizer than the model; speculative "
                                "decoding needs both trained with the same tokenizer (the same corpus and vocabulary)");
                generator->set_draft(draft->params.get(), kLookahead);
                m_draft = std::move(draft);
                info.draftPath = request.draftPath;
                info.draftParameters = count_params(m_draft->config).total();
            } catch (const std::exception& e) {
                info.draftProblem = describe(e, tr("loading the draft model"));
            }
        }
        std::unique_ptr<Generator> baseGenerator;
        if (m_model->lora) {
            // The base as it was before the merge, read again from its folder.
            if (!m_baseParams) {
                m_baseParams = std::make_unique<ParamStore>(*m_model->backend, m_model->config, false);
                load_base_weights(open_base_model(m_model->base), *m_baseParams);
            }
            baseGenerator = std::make_unique<Generator>(*m_baseParams, m_model->tokenizer, 1, m_model->config.seq_len);
            if (m_draft) baseGenerator->set_draft(m_draft->params.get(), kLookahead);
            info.hasAdapter = true;
            info.adapterEnabled = m_adapterOn;
            const LoraConfig& lora = *m_model->lora;
            QStringList modules;
            for (const std::string& t : lora.targets) modules << QString::fromStdString(t.substr(0, t.find("_proj")));
            info.adapter = tr("LoRA r%1 on %2").arg(lora.rank).arg(modules.join(QStringLiteral(", ")));
            info.base = QString::fromStdString(m_model->base.string());
        } else {
            m_adapterOn = true;
        }
        info.cacheBytes = qint64(generator->bytes()) + (baseGenerator ? qint64(baseGenerator->bytes()) : 0);
        {
            std::lock_guard lock(m_mutex);
            m_generator = std::move(generator);
            m_baseGenerator = std::move(baseGenerator);
        }
        info.checkpoint = QString::fromStdString(m_model->checkpoint.string());
        info.step = m_model->step;
        info.device = QString::fromStdString(m_model->backend->facts().name);
        info.parameters = count_params(m_model->config).total();
        info.context = m_model->config.seq_len;
        info.vocabulary = m_model->config.vocab_size;
        m_info = info;
        emit modelLoaded(info);
    } catch (const std::exception& e) {
        releaseModel();
        emit modelFailed(request.id, describe(e, tr("loading the model")));
    }
}

void ChatWorker::syncTranscript(const ChatGenerateRequest& request)
{
    ChatFormat format;
    format.system = request.system.toStdString();
    format.user_prefix = request.userPrefix.toStdString();
    format.assistant_prefix = request.assistantPrefix.toStdString();
    const ChatFormat* held = m_transcript ? &m_transcript->format() : nullptr;
    if (!held || held->system != format.system || held->user_prefix != format.user_prefix ||
        held->assistant_prefix != format.assistant_prefix) {
        m_transcript = std::make_unique<ChatTranscript>(m_model->tokenizer, format);
        // A chat model from Hugging Face talks in its own format (its chat template).
        if (m_model->tokenizer_config)
            m_transcript->set_template(ChatTemplate::from_tokenizer_config(*m_model->tokenizer_config, m_model->tokenizer));
    }
    // Keep the turns the page still shows unchanged (with the model's own
    // tokens, which the KV cache holds), and encode the rest from their text.
    size_t same = 0;
    const size_t n = size_t(request.history.size());
    while (same < n && same < m_transcript->turns() &&
           m_transcript->message(same) == request.history[qsizetype(same)].message.toStdString() &&
           m_transcript->reply(same) == request.history[qsizetype(same)].reply.toStdString())
        ++same;
    m_transcript->truncate(same);
    for (size_t i = same; i < n; ++i)
        m_transcript->add_turn(request.history[qsizetype(i)].message.toStdString(),
                               request.history[qsizetype(i)].reply.toStdString());
}

ChatToken ChatWorker::toChatToken(const TokenEvent& e) const
{
    ChatToken t;
    t.text = fromUtf8(e.text);
    t.piece = readableToken(e.bytes);
    t.probability = e.probability;
    t.alternatives.reserve(qsizetype(e.alternatives.size()));
    for (const auto& [id, p] : e.alternatives) t.alternatives.push_back({readableToken(m_model->tokenizer.token_bytes(id)), p});
    return t;
}

void ChatWorker::generate(const ChatGenerateRequest& request)
{
    if (!m_generator) {
        emit replyFailed(request.id, tr("No model is loaded: choose a run with a checkpoint first."));
        return;
    }
    m_tokens.reset();
    m_replyId = request.id;
    try {
        syncTranscript(request);
        const int context = m_model->config.seq_len;
        GenerationRequest g;
        g.sampling = request.sampling;
        g.top_alternatives = request.alternatives;
        g.reuse_cache = true;
        std::vector<int32_t> ids;
        m_transcript->prompt(request.message.toStdString(), ChatTranscript::prompt_budget(context, request.maxNewTokens), ids);
        g.prompts = {ids};
        ChatStopRules rules;
        rules.blank_line = request.stopAtBlankLine;
        rules.speaker_line = request.stopAtSpeaker;
        rules.max_reply_tokens = request.maxNewTokens;
        rules.apply(*m_transcript, ids.size(), context, g);

        GenerationStats stats;
        if (m_stop.load()) {
            // Stopped before it began: an empty reply, as a stop after no tokens.
            stats.stop_reason = "cancelled";
            stats.tokens = {{}};
            stats.texts = {{}};
        } else {
            Generator& generator = m_adapterOn || !m_baseGenerator ? *m_generator : *m_baseGenerator;
            stats = generator.generate(g, [&](const TokenEvent& e) {
                m_tokens.add(toChatToken(e));
                return !m_stop.load();
            });
        }
        m_tokens.flush();
        m_transcript->reply(stats.tokens[0], stats.texts[0]);

        ChatReply reply;
        reply.id = request.id;
        reply.text = fromUtf8(stats.texts[0]);
        reply.stopReason = QString::fromStdString(stats.stop_reason);
        reply.promptTokens = stats.prompt_tokens;
        reply.generatedTokens = stats.generated_tokens;
        reply.prefillTokensPerSecond = stats.prefill_tokens_per_s();
        reply.decodeTokensPerSecond = stats.decode_tokens_per_s();
        reply.draftProposed = stats.draft_proposed;
        reply.draftAccepted = stats.draft_accepted;
        reply.forgottenTurns = int(m_transcript->forgotten());
        reply.context = context;
        if (m_baseGenerator) reply.answeredBy = m_adapterOn ? tr("adapter on") : tr("adapter off (base alone)");
        emit replyFinished(reply);
    } catch (const std::exception& e) {
        m_tokens.flush();
        m_transcript.reset();   // its open turn is unknown now; the next request rebuilds it
        emit replyFailed(request.id, describe(e, tr("generating the reply")));
    }
}

} // namespace crucible::ui
