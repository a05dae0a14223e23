#include "ui/pages/chat_transcript_view.h"

#include "ui/format.h"
#include "ui/theme.h"

#include <QAbstractTextDocumentLayout>
#include <QLinearGradient>
#include <QMouseEvent>
#include <QPainter>
#include <QScrollBar>
#include <QTextBlock>
#include <QTextFrame>
#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace crucible::ui {

namespace {

// Where a model token's character format keeps what it is.
constexpr int kTurnProperty = QTextFormat::UserProperty + 1;
constexpr int kTokenProperty = QTextFormat::UserProperty + 2;

const QColor kUserBand(0xee, 0xf3, 0xff);
const QColor kUserBorder(0xd6, 0xe0, 0xf5);
const QColor kModelCaption(0xc2, 0x41, 0x0c);

QTextFrameFormat turnFrame(const QColor& background, const QColor& border)
{
    QTextFrameFormat f;
    f.setBackground(background);
    f.setBorder(border.isValid() ? 1 : 0);
    f.setBorderBrush(border);
    f.setBorderStyle(QTextFrameFormat::BorderStyle_Solid);
    f.setPadding(8);
    f.setTopMargin(4);
    f.setBottomMargin(4);
    return f;
}

QString percent(float p) { return p >= 0.0995f ? QString::number(100.0 * p, 'f', 1) + QLatin1Char('%') : QString::number(100.0 * p, 'g', 2) + QLatin1Char('%'); }

} // namespace

QString replySummary(const ChatReply& r)
{
    QStringList parts;
    auto tokens = [](qint64 n) { return n == 1 ? QObject::tr("1 token") : QObject::tr("%1 tokens").arg(n); };
    parts << QObject::tr("prefill %1 at %2 tok/s").arg(tokens(r.promptTokens), formatRate(r.prefillTokensPerSecond));
    parts << QObject::tr("%1 at %2 tok/s").arg(tokens(r.generatedTokens), formatRate(r.decodeTokensPerSecond));
    if (!r.stopReason.isEmpty()) parts << r.stopReason;
    if (!r.answeredBy.isEmpty()) parts << r.answeredBy;
    if (r.draftProposed > 0)
        parts << QObject::tr("draft acceptance %1% (%2 of %3)")
                     .arg(QString::number(100.0 * double(r.draftAccepted) / double(r.draftProposed), 'f', 0))
                     .arg(r.draftAccepted)
                     .arg(r.draftProposed);
    return parts.join(QStringLiteral(" · "));
}

// ---- ChatTranscriptView -----------------------------------------------------------------------

ChatTranscriptView::ChatTranscriptView(QWidget* parent) : QTextBrowser(parent)
{
    setOpenLinks(false);
    setUndoRedoEnabled(false);
    viewport()->setMouseTracking(true);
    document()->setDocumentMargin(12);
}

QColor ChatTranscriptView::colourFor(float p)
{
    // On a log scale, where a small model's probabilities live: 1% and less
    // is red, 10% yellow, certainty green.
    const float t = std::clamp(1.0f + std::log10(std::max(p, 1e-6f)) / 2.0f, 0.0f, 1.0f);
    return QColor::fromHsvF(0.333f * t, 0.26f, 1.0f);
}

bool ChatTranscriptView::following() const
{
    const QScrollBar* bar = verticalScrollBar();
    return bar->value() >= bar->maximum() - 4;
}

void ChatTranscriptView::scrollToEndIfFollowing(bool follow)
{
    if (follow) verticalScrollBar()->setValue(verticalScrollBar()->maximum());
}

void ChatTranscriptView::insertCaption(QTextCursor& cursor, const QString& text, const QColor& color)
{
    QTextCharFormat f;
    f.setForeground(color);
    f.setFontWeight(QFont::DemiBold);
    f.setFontPointSize(font().pointSizeF() - 1);
    cursor.insertText(text, f);
    QTextBlockFormat b;
    b.setTopMargin(2);
    cursor.insertBlock(b, QTextCharFormat());
}

void ChatTranscriptView::insertToken(QTextCursor& cursor, int turn, int index, const ChatToken& token)
{
    QTextCharFormat f;
    f.setForeground(theme::text());
    if (token.probability >= 0) {
        f.setProperty(kTurnProperty, turn);
        f.setProperty(kTokenProperty, index);
        if (m_inspecting) f.setBackground(colourFor(token.probability));
    }
    cursor.insertText(token.text, f);
}

void ChatTranscriptView::render(const ChatConversation& c)
{
    const bool follow = following();
    const int scroll = verticalScrollBar()->value();
    m_conversation = &c;
    m_tail = QTextCursor();
    m_hoverTurn = m_hoverIndex = -1;
    setExtraSelections({});
    document()->clear();
    QTextCursor cursor(document());
    QTextCharFormat plain;
    plain.setForeground(theme::text());
    QTextCharFormat muted;
    muted.setForeground(theme::mutedText());

    if (!c.system.isEmpty()) {
        insertCaption(cursor, tr("Before the conversation"), theme::mutedText());
        cursor.insertText(c.system.endsWith(QLatin1Char('\n')) ? c.system.chopped(1) : c.system, muted);
        cursor.insertBlock();
    }
    for (int i = 0; i < c.turns.size(); ++i) {
        const ChatTurn& t = c.turns[i];
        QTextFrame* user = cursor.insertFrame(turnFrame(kUserBand, kUserBorder));
        insertCaption(cursor, tr("You"), theme::accent());
        cursor.insertText(t.message, plain);
        cursor = user->lastCursorPosition();
        cursor.movePosition(QTextCursor::NextBlock);

        QTextFrame* model = cursor.insertFrame(turnFrame(Qt::white, QColor()));
        insertCaption(cursor, tr("Model"), kModelCaption);
        const int start = cursor.position();
        QString shown;
        for (int k = 0; k < t.tokens.size(); ++k) {
            insertToken(cursor, i, k, t.tokens[k]);
            shown += t.tokens[k].text;
        }
        // A reply restored without its tokens, or a tail no token covers.
        if (t.complete && shown.size() < t.reply.size() && t.reply.startsWith(shown))
            cursor.insertText(t.reply.mid(shown.size()), plain);
        if (t.complete) {
            // The newlines a reply ends with would only push its summary down.
            for (QTextCursor last = cursor; last.position() > start; last = cursor) {
                last.movePosition(QTextCursor::PreviousCharacter, QTextCursor::KeepAnchor);
                const QString c = last.selectedText();
                if (c != QString(QChar(QChar::ParagraphSeparator)) && c != QLatin1String("\n")) break;
                last.removeSelectedText();
                cursor = last;
            }
            QString note = t.hasStats ? replySummary(t.stats) : QString();
            if (t.reply.isEmpty()) note = note.isEmpty() ? tr("(no reply)") : tr("(no reply) · %1").arg(note);
            if (!note.isEmpty()) {
                QTextBlockFormat b;
                b.setTopMargin(6);
                QTextCharFormat small = muted;
                small.setFontPointSize(font().pointSizeF() - 1.5);
                cursor.insertBlock(b, small);
                cursor.insertText(note, small);
            }
        }
        if (!t.complete) m_tail = cursor;   // streaming tokens continue here
        cursor = model->lastCursorPosition();
        cursor.movePosition(QTextCursor::NextBlock);
    }
    if (follow) scrollToEndIfFollowing(true);
    else verticalScrollBar()->setValue(scroll);
}

void ChatTranscriptView::appendTokens(int turn, int firstIndex, const QVector<ChatToken>& tokens)
{
    if (m_tail.isNull()) return;
    const bool follow = following();
    for (int k = 0; k < tokens.size(); ++k) insertToken(m_tail, turn, firstIndex + k, tokens[k]);
    scrollToEndIfFollowing(follow);
}

QTextCursor ChatTranscriptView::tokenCursor(int turn, int index) const
{
    for (QTextBlock block = document()->begin(); block.isValid(); block = block.next()) {
        for (auto it = block.begin(); !it.atEnd(); ++it) {
            const QTextFragment fragment = it.fragment();
            const QTextCharFormat f = fragment.charFormat();
            if (f.intProperty(kTurnProperty) != turn || !f.hasProperty(kTokenProperty) || f.intProperty(kTokenProperty) != index)
                continue;
            QTextCursor c(document());
            c.setPosition(fragment.position());
            c.setPosition(fragment.position() + fragment.length(), QTextCursor::KeepAnchor);
            return c;
        }
    }
    return {};
}

void ChatTranscriptView::markToken(int turn, int index)
{
    QList<ExtraSelection> marks;
    const QTextCursor token = turn >= 0 ? tokenCursor(turn, index) : QTextCursor();
    if (!token.isNull()) {
        ExtraSelection mark;
        mark.cursor = token;
        mark.format.setUnderlineStyle(QTextCharFormat::SingleUnderline);
        mark.format.setUnderlineColor(theme::accent());
        mark.format.setForeground(theme::accent());
        marks << mark;
    }
    setExtraSelections(marks);
}

void ChatTranscriptView::setInspecting(bool on)
{
    m_inspecting = on;
    if (!on) {
        QToolTip::hideText();
        markToken(-1, -1);
    }
}

void ChatTranscriptView::mouseMoveEvent(QMouseEvent* event)
{
    QTextBrowser::mouseMoveEvent(event);
    if (!m_inspecting || !m_conversation) return;
    const QPoint at = event->position().toPoint() + QPoint(horizontalScrollBar()->value(), verticalScrollBar()->value());
    const int position = document()->documentLayout()->hitTest(at, Qt::ExactHit);
    int turn = -1, index = -1;
    if (position >= 0) {
        QTextCursor c(document());
        c.setPosition(position);
        c.movePosition(QTextCursor::NextCharacter, QTextCursor::KeepAnchor);
        const QTextCharFormat f = c.charFormat();
        if (f.hasProperty(kTurnProperty)) {
            turn = f.intProperty(kTurnProperty);
            index = f.intProperty(kTokenProperty);
        }
    }
    if (turn == m_hoverTurn && index == m_hoverIndex) return;
    m_hoverTurn = turn;
    m_hoverIndex = index;
    if (turn < 0 || turn >= m_conversation->turns.size() || index >= m_conversation->turns[turn].tokens.size()) {
        QToolTip::hideText();
        return;
    }
    const ChatToken& t = m_conversation->turns[turn].tokens[index];
    QString html = QStringLiteral("<b>%1</b> &nbsp;%2").arg(t.piece.toHtmlEscaped(), percent(t.probability));
    if (!t.alternatives.isEmpty()) {
        html += QStringLiteral("<table cellspacing='0' cellpadding='1' style='margin-top:4px'>");
        for (const auto& [piece, p] : t.alternatives)
            html += QStringLiteral("<tr><td style='padding-right:12px'>%1</td><td align='right'>%2</td></tr>")
                        .arg(piece == t.piece ? QStringLiteral("<b>%1</b>").arg(piece.toHtmlEscaped()) : piece.toHtmlEscaped(),
                             percent(p));
        html += QStringLiteral("</table>");
    }
    QToolTip::showText(event->globalPosition().toPoint(), html, viewport());
    emit tokenHovered(turn, index);
}

// ---- TokenInspector -----------------------------------------------------------------------------

TokenInspector::TokenInspector(QWidget* parent) : QWidget(parent)
{
    setMinimumWidth(200);
    setAttribute(Qt::WA_OpaquePaintEvent);
}

QSize TokenInspector::sizeHint() const { return {240, 320}; }

void TokenInspector::showToken(const ChatToken& token)
{
    m_token = token;
    m_empty = false;
    update();
}

void TokenInspector::clear()
{
    m_token = ChatToken{};
    m_empty = true;
    update();
}

void TokenInspector::paintEvent(QPaintEvent*)
{
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    p.fillRect(rect(), Qt::white);
    p.setPen(theme::border());
    p.drawRect(rect().adjusted(0, 0, -1, -1));
    const int margin = 12, width = this->width() - 2 * margin;
    int y = margin;
    QFont bold = font();
    bold.setWeight(QFont::DemiBold);
    QFont small = font();
    small.setPointSizeF(font().pointSizeF() - 1);
    const int line = fontMetrics().height();

    p.setFont(bold);
    p.setPen(theme::text());
    p.drawText(margin, y, width, line, Qt::AlignLeft | Qt::AlignVCenter, tr("Token inspector"));
    y += line + 6;
    if (m_empty) {
        p.setFont(small);
        p.setPen(theme::mutedText());
        const QString hint = tr("Hover a token of a reply to see how sure the model was, and which tokens it weighed instead.");
        const QRect text(margin, y, width, 6 * line);
        p.drawText(text, Qt::TextWordWrap, hint);
        y += QFontMetrics(small).boundingRect(text, Qt::TextWordWrap, hint).height() + 10;
    } else {
        QFont big = font();
        big.setPointSizeF(font().pointSizeF() + 3);
        big.setWeight(QFont::DemiBold);
        p.setFont(big);
        const int bigLine = QFontMetrics(big).height();
        const QRect chip(margin, y, std::min(width, QFontMetrics(big).horizontalAdvance(m_token.piece) + 16), bigLine + 4);
        p.setPen(Qt::NoPen);
        p.setBrush(ChatTranscriptView::colourFor(m_token.probability));
        p.drawRoundedRect(chip, 4, 4);
        p.setPen(theme::text());
        p.drawText(chip, Qt::AlignCenter, m_token.piece);
        p.setFont(font());
        p.setPen(theme::mutedText());
        p.drawText(chip.right() + 10, y, width - chip.width() - 10, bigLine + 4, Qt::AlignLeft | Qt::AlignVCenter,
                   tr("%1 likely").arg(percent(m_token.probability)));
        y += bigLine + 14;
        p.setFont(small);
        p.drawText(margin, y, width, line, Qt::AlignLeft | Qt::AlignVCenter, tr("The model's top choices here"));
        y += line + 4;
        const int labelWidth = std::min(width / 3, 90), valueWidth = QFontMetrics(small).horizontalAdvance(QStringLiteral("100.0%")) + 4;
        const int barWidth = std::max(10, width - labelWidth - valueWidth - 12);
        for (const auto& [piece, prob] : m_token.alternatives) {
            const bool chosen = piece == m_token.piece;
            p.setFont(chosen ? bold : font());
            p.setPen(theme::text());
            p.drawText(margin, y, labelWidth, line, Qt::AlignLeft | Qt::AlignVCenter,
                       QFontMetrics(p.font()).elidedText(piece, Qt::ElideRight, labelWidth));
            const QRectF track(margin + labelWidth + 6, y + line * 0.2, barWidth, line * 0.6);
            p.setPen(Qt::NoPen);
            p.setBrush(QColor(0xf1, 0xf3, 0xf6));
            p.drawRoundedRect(track, 3, 3);
            p.setBrush(chosen ? theme::accent() : QColor(0x93, 0xa4, 0xc0));
            p.drawRoundedRect(QRectF(track.left(), track.top(), std::max(2.0, track.width() * double(prob)), track.height()), 3, 3);
            p.setFont(small);
            p.setPen(theme::mutedText());
            p.drawText(int(track.right()) + 6, y, valueWidth, line, Qt::AlignRight | Qt::AlignVCenter, percent(prob));
            y += line + 4;
        }
        y += 8;
    }

    // The colour key of the transcript.
    p.setFont(small);
    p.setPen(theme::mutedText());
    y = std::max(y, height() - margin - 2 * line - 6);
    QLinearGradient key(margin, 0, margin + width, 0);
    for (float s : {0.0f, 0.5f, 1.0f}) key.setColorAt(s, ChatTranscriptView::colourFor(std::pow(10.0f, 2.0f * (s - 1.0f))));
    p.setPen(Qt::NoPen);
    p.setBrush(key);
    p.drawRoundedRect(QRectF(margin, y, width, line * 0.7), 3, 3);
    p.setPen(theme::mutedText());
    y += int(line * 0.7) + 2;
    p.drawText(margin, y, width, line, Qt::AlignLeft | Qt::AlignVCenter, tr("1%"));
    p.drawText(margin, y, width, line, Qt::AlignHCenter | Qt::AlignVCenter, tr("10%"));
    p.drawText(margin, y, width, line, Qt::AlignRight | Qt::AlignVCenter, tr("100% likely"));
}

} // namespace crucible::ui
