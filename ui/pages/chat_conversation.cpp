#include "ui/pages/chat_conversation.h"

#include "core/generate/chat_transcript.h"
#include "core/io/file_util.h"
#include "kernels/error.h"

#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>

namespace crucible::ui {

namespace {

constexpr int kVersion = 1;
const QLatin1String kFormat("crucible-chat");

QJsonObject statsToJson(const ChatReply& r)
{
    return QJsonObject{
        {QStringLiteral("stop_reason"), r.stopReason},
        {QStringLiteral("prompt_tokens"), r.promptTokens},
        {QStringLiteral("generated_tokens"), r.generatedTokens},
        {QStringLiteral("prefill_tokens_per_s"), r.prefillTokensPerSecond},
        {QStringLiteral("decode_tokens_per_s"), r.decodeTokensPerSecond},
        {QStringLiteral("draft_proposed"), r.draftProposed},
        {QStringLiteral("draft_accepted"), r.draftAccepted},
        {QStringLiteral("forgotten_turns"), r.forgottenTurns},
        {QStringLiteral("context"), r.context},
        {QStringLiteral("answered_by"), r.answeredBy},
    };
}

ChatReply statsFromJson(const QJsonObject& j)
{
    ChatReply r;
    r.stopReason = j.value(QStringLiteral("stop_reason")).toString();
    r.promptTokens = j.value(QStringLiteral("prompt_tokens")).toInteger();
    r.generatedTokens = j.value(QStringLiteral("generated_tokens")).toInteger();
    r.prefillTokensPerSecond = j.value(QStringLiteral("prefill_tokens_per_s")).toDouble();
    r.decodeTokensPerSecond = j.value(QStringLiteral("decode_tokens_per_s")).toDouble();
    r.draftProposed = j.value(QStringLiteral("draft_proposed")).toInteger();
    r.draftAccepted = j.value(QStringLiteral("draft_accepted")).toInteger();
    r.forgottenTurns = j.value(QStringLiteral("forgotten_turns")).toInt();
    r.context = j.value(QStringLiteral("context")).toInt();
    r.answeredBy = j.value(QStringLiteral("answered_by")).toString();
    return r;
}

QJsonObject tokenToJson(const ChatToken& t)
{
    QJsonArray alternatives;
    for (const auto& [piece, p] : t.alternatives) alternatives.append(QJsonArray{piece, double(p)});
    QJsonObject j{{QStringLiteral("text"), t.text}, {QStringLiteral("p"), double(t.probability)}};
    if (!t.piece.isEmpty()) j.insert(QStringLiteral("piece"), t.piece);
    if (!alternatives.isEmpty()) j.insert(QStringLiteral("alternatives"), alternatives);
    return j;
}

ChatToken tokenFromJson(const QJsonObject& j)
{
    ChatToken t;
    t.text = j.value(QStringLiteral("text")).toString();
    t.piece = j.value(QStringLiteral("piece")).toString();
    t.probability = float(j.value(QStringLiteral("p")).toDouble(-1.0));
    for (const QJsonValue& a : j.value(QStringLiteral("alternatives")).toArray()) {
        const QJsonArray pair = a.toArray();
        if (pair.size() == 2) t.alternatives.push_back({pair[0].toString(), float(pair[1].toDouble())});
    }
    return t;
}

} // namespace

QVector<ChatTurnText> ChatConversation::history(int turn) const
{
    QVector<ChatTurnText> out;
    for (int i = 0; i < turn && i < turns.size(); ++i) out.push_back({turns[i].message, turns[i].reply});
    return out;
}

QString ChatConversation::plainText() const
{
    ChatFormat format;
    format.system = system.toStdString();
    format.user_prefix = userPrefix.toStdString();
    format.assistant_prefix = assistantPrefix.toStdString();
    std::vector<std::pair<std::string, std::string>> text;
    for (const ChatTurn& t : turns) text.emplace_back(t.message.toStdString(), t.reply.toStdString());
    return QString::fromStdString(format.render(text));
}

QJsonObject ChatConversation::toJson() const
{
    QJsonArray list;
    for (const ChatTurn& t : turns) {
        QJsonArray tokens;
        for (const ChatToken& token : t.tokens) tokens.append(tokenToJson(token));
        QJsonObject turn{{QStringLiteral("message"), t.message}, {QStringLiteral("reply"), t.reply}};
        if (t.hasStats) turn.insert(QStringLiteral("stats"), statsToJson(t.stats));
        if (!tokens.isEmpty()) turn.insert(QStringLiteral("tokens"), tokens);
        list.append(turn);
    }
    return QJsonObject{
        {QStringLiteral("format"), kFormat},
        {QStringLiteral("version"), kVersion},
        {QStringLiteral("system"), system},
        {QStringLiteral("user_prefix"), userPrefix},
        {QStringLiteral("assistant_prefix"), assistantPrefix},
        {QStringLiteral("draws"), draws},
        {QStringLiteral("turns"), list},
    };
}

ChatConversation ChatConversation::fromJson(const QJsonObject& j, QString* error)
{
    ChatConversation c;
    if (j.value(QStringLiteral("format")).toString() != kFormat || j.value(QStringLiteral("version")).toInt() != kVersion) {
        if (error) *error = QObject::tr("it is not a conversation saved by this version of Crucible");
        return c;
    }
    c.system = j.value(QStringLiteral("system")).toString();
    c.userPrefix = j.value(QStringLiteral("user_prefix")).toString(c.userPrefix);
    c.assistantPrefix = j.value(QStringLiteral("assistant_prefix")).toString(c.assistantPrefix);
    c.draws = j.value(QStringLiteral("draws")).toInt();
    for (const QJsonValue& v : j.value(QStringLiteral("turns")).toArray()) {
        const QJsonObject o = v.toObject();
        ChatTurn t;
        t.message = o.value(QStringLiteral("message")).toString();
        t.reply = o.value(QStringLiteral("reply")).toString();
        t.complete = true;
        if (o.contains(QStringLiteral("stats"))) {
            t.stats = statsFromJson(o.value(QStringLiteral("stats")).toObject());
            t.hasStats = true;
        }
        for (const QJsonValue& token : o.value(QStringLiteral("tokens")).toArray()) t.tokens.push_back(tokenFromJson(token.toObject()));
        c.turns.push_back(t);
    }
    c.draws = std::max(c.draws, int(c.turns.size()));
    return c;
}

bool ChatConversation::save(const QString& file, QString* error) const
{
    try {
        const QByteArray bytes = QJsonDocument(toJson()).toJson(QJsonDocument::Indented);
        write_file_atomic(file.toStdString(), std::string_view(bytes.constData(), size_t(bytes.size())));
        return true;
    } catch (const Error& e) {
        if (error) *error = QString::fromUtf8(e.what());
        return false;
    }
}

ChatConversation ChatConversation::load(const QString& file, QString* error)
{
    if (!QFileInfo::exists(file)) return {};
    try {
        const std::string bytes = read_file(file.toStdString());
        QJsonParseError parse{};
        const QJsonDocument doc = QJsonDocument::fromJson(QByteArray::fromStdString(bytes), &parse);
        if (!doc.isObject()) {
            if (error) *error = QObject::tr("%1 is not valid JSON (%2)").arg(file, parse.errorString());
            return {};
        }
        QString why;
        ChatConversation c = fromJson(doc.object(), &why);
        if (!why.isEmpty() && error) *error = QObject::tr("%1: %2").arg(file, why);
        return c;
    } catch (const Error& e) {
        if (error) *error = QString::fromUtf8(e.what());
        return {};
    }
}

} // namespace crucible::ui
