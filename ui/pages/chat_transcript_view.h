// The Chat page's transcript and token inspector.
//
// ChatTranscriptView shows a ChatConversation as a document: the text before
// the conversation, then the user's turns on a tinted band and the model's
// replies below them, each with the speed it was generated at. A reply
// streams in token by token (appendTokens adds to the end of the document;
// nothing is laid out again). Every model token carries its turn and index
// in its character format, so with inspection on the view colours tokens by
// their probability and reports the token under the mouse.
//
// TokenInspector lists one token's most likely alternatives as bars.
#pragma once

#include "ui/pages/chat_conversation.h"

#include <QTextBrowser>
#include <QTextCursor>
#include <QWidget>

namespace crucible::ui {

class ChatTranscriptView : public QTextBrowser {
    Q_OBJECT
public:
    explicit ChatTranscriptView(QWidget* parent = nullptr);

    // Lays out the whole conversation again (after a reply, a regenerate, a
    // clear, a switch of run, or when inspection is turned on or off).
    void render(const ChatConversation& conversation);
    // Adds tokens to the reply being generated, the last turn's.
    void appendTokens(int turn, int firstIndex, const QVector<ChatToken>& tokens);
    // A cursor selecting token `index` of turn `turn`'s reply (null when not shown).
    QTextCursor tokenCursor(int turn, int index) const;
    // Marks the token the inspector shows (none for turn < 0).
    void markToken(int turn, int index);
    // Colour tokens by probability and report hovered tokens.
    void setInspecting(bool on);
    bool inspecting() const { return m_inspecting; }

    // The background a token of probability p gets: red for a long shot, green for a sure thing.
    static QColor colourFor(float probability);

signals:
    void tokenHovered(int turn, int index);

protected:
    void mouseMoveEvent(QMouseEvent* event) override;

private:
    void insertToken(QTextCursor& cursor, int turn, int index, const ChatToken& token);
    void insertCaption(QTextCursor& cursor, const QString& text, const QColor& color);
    void scrollToEndIfFollowing(bool following);
    bool following() const;

    const ChatConversation* m_conversation = nullptr;
    QTextCursor m_tail;   // the end of the reply being generated
    bool m_inspecting = false;
    int m_hoverTurn = -1, m_hoverIndex = -1;
};

class TokenInspector : public QWidget {
    Q_OBJECT
public:
    explicit TokenInspector(QWidget* parent = nullptr);

    void showToken(const ChatToken& token);
    void clear();
    QString chosen() const { return m_token.piece; }

    QSize sizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    ChatToken m_token;
    bool m_empty = true;
};

// "24 prompt tokens at 1.20 K tok/s · 48 tokens at 310 tok/s · length · draft 61% accepted"
QString replySummary(const ChatReply& reply);

} // namespace crucible::ui
