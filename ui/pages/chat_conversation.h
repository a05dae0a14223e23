// ChatConversation: what the Chat page shows and keeps with a run — the text
// before the conversation, the turn prefixes, and the turns, each reply with
// its tokens (probability and alternatives, for the "Show alternatives" view)
// and the speed it was generated at. Saved atomically as <run>/chat.json after
// every reply and read back when the run is opened again.
#pragma once

#include "ui/workers/chat_worker.h"

#include <QJsonObject>
#include <QString>
#include <QVector>

namespace crucible::ui {

struct ChatTurn {
    QString message;
    QString reply;
    QVector<ChatToken> tokens;   // the reply's pieces in order; a piece with probability < 0 has no token behind it
    ChatReply stats;
    bool complete = false;       // the reply has ended (finished, stopped or failed)
    bool hasStats = false;       // stats describe how it was generated
};

struct ChatConversation {
    QString system;
    QString userPrefix = QStringLiteral("User: ");
    QString assistantPrefix = QStringLiteral("Assistant: ");
    QVector<ChatTurn> turns;
    // Replies drawn so far, regenerated ones included: each reply samples with
    // seed + draws, so a regenerated reply differs and a conversation replays.
    int draws = 0;

    bool isEmpty() const { return turns.isEmpty(); }
    // The finished turns before `turn`, as the worker rebuilds the prompt from them.
    QVector<ChatTurnText> history(int turn) const;
    // The transcript as the model reads it (the format of crucible-cli chat).
    QString plainText() const;

    QJsonObject toJson() const;
    // Throws nothing: a malformed file gives an empty conversation and *error.
    static ChatConversation fromJson(const QJsonObject& json, QString* error);

    // chat.json in a run folder. save() writes atomically and returns false
    // with *error set on failure; load() of a missing file is an empty
    // conversation without an error.
    bool save(const QString& file, QString* error) const;
    static ChatConversation load(const QString& file, QString* error);
};

} // namespace crucible::ui
