// ChatSettings: the Chat page's side panel. Sampling (temperature, top-k,
// top-p, min-p, the penalties and the seed) and where a reply ends (a blank
// line, a new speaker, its longest length), kept in QSettings and reset to
// the defaults with one button; and the conversation's
// format (the text before it and the two turn prefixes), which belongs to the
// conversation and is saved with it.
#pragma once

#include "core/generate/chat_stop_rules.h"
#include "core/generate/sampler.h"

#include <QWidget>

class QCheckBox;
class QDoubleSpinBox;
class QLineEdit;
class QPlainTextEdit;
class QSpinBox;

namespace crucible::ui {

struct ChatConversation;

class ChatSettings : public QWidget {
    Q_OBJECT
public:
    explicit ChatSettings(QWidget* parent = nullptr);

    // The sampling settings as the next reply will use them (before its seed offset).
    SamplingConfig sampling() const;
    int maxNewTokens() const;
    // Where the next reply ends (the reply length included).
    ChatStopRules stopRules() const;

    QString system() const;
    QString userPrefix() const;
    QString assistantPrefix() const;
    // Shows a conversation's format without reporting it as an edit.
    void showFormat(const ChatConversation& conversation);
    // While a reply is generated its format may not change: the worker built its prompt from it.
    void setFormatLocked(bool locked);

public slots:
    void resetSampling();

signals:
    void formatEdited();

private:
    void restoreSampling();
    void saveSampling() const;

    QDoubleSpinBox* m_temperature;
    QSpinBox* m_topK;
    QDoubleSpinBox* m_topP;
    QDoubleSpinBox* m_minP;
    QDoubleSpinBox* m_repetition;
    QDoubleSpinBox* m_presence;
    QSpinBox* m_maxTokens;
    QCheckBox* m_stopAtBlankLine;
    QCheckBox* m_stopAtSpeaker;
    QSpinBox* m_seed;
    QPlainTextEdit* m_system;
    QLineEdit* m_userPrefix;
    QLineEdit* m_assistantPrefix;
};

} // namespace crucible::ui
