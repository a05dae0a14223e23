#include "ui/pages/chat_settings.h"

#include "ui/pages/chat_conversation.h"
#include "ui/widgets/form_helpers.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QVBoxLayout>

#include <climits>

namespace crucible::ui {

namespace {

// Sampling defaults for a conversation: varied but on topic.
constexpr double kTemperature = 0.8;
constexpr int kTopK = 40;
constexpr double kTopP = 0.95;
constexpr double kMinP = 0.0;
constexpr double kRepetition = 1.1;
constexpr double kPresence = 0.0;
constexpr int kMaxNewTokens = ChatStopRules::kDefaultMaxReplyTokens;
constexpr int kSeed = 0;

QDoubleSpinBox* makeDouble(QWidget* parent, const char* name, double min, double max, double step, int decimals,
                           const QString& tip, const QString& special = QString())
{
    auto* box = new QDoubleSpinBox(parent);
    box->setObjectName(QString::fromLatin1(name));
    box->setRange(min, max);
    box->setSingleStep(step);
    box->setDecimals(decimals);
    box->setToolTip(tip);
    box->setKeyboardTracking(false);
    if (!special.isEmpty()) box->setSpecialValueText(special);
    return box;
}

} // namespace

ChatSettings::ChatSettings(QWidget* parent) : QWidget(parent)
{
    auto* column = new QVBoxLayout(this);
    column->setContentsMargins(8, 0, 4, 0);

    auto* sampling = new QGroupBox(tr("Sampling"), this);
    auto* form = new QFormLayout(sampling);
    form->setLabelAlignment(Qt::AlignRight | Qt::AlignVCenter);
    m_temperature = makeDouble(sampling, "temperatureBox", 0.0, 5.0, 0.05, 2,
                               tr("Divides the logits: lower is more predictable, higher more surprising; 0 always "
                                  "takes the most likely token"), tr("0 · greedy"));
    m_topK = makeSpin(sampling, "topKBox", 0, 1'000'000, tr("Keep only the k most likely tokens (0 = off)"), tr("off"));
    m_topP = makeDouble(sampling, "topPBox", 0.01, 1.0, 0.01, 2,
                        tr("Keep the smallest set of tokens whose probabilities add up to p (1 = off)"));
    m_minP = makeDouble(sampling, "minPBox", 0.0, 0.99, 0.01, 2,
                        tr("Drop tokens less likely than min-p × the most likely one (0 = off)"), tr("off"));
    m_repetition = makeDouble(sampling, "repetitionBox", 1.0, 5.0, 0.05, 2,
                              tr("Make tokens already in the conversation less likely (1 = off)"), tr("1 · off"));
    m_presence = makeDouble(sampling, "presenceBox", 0.0, 10.0, 0.1, 2,
                            tr("Subtract this from the logit of every token already seen (0 = off)"), tr("off"));
    m_seed = makeSpin(sampling, "seedBox", 0, INT_MAX,
                      tr("The random seed: the same seed and conversation give the same reply; each new or "
                         "regenerated reply draws with the next seed"));
    m_seed->setGroupSeparatorShown(false);
    form->addRow(tr("Temperature"), m_temperature);
    form->addRow(tr("Top-k"), m_topK);
    form->addRow(tr("Top-p"), m_topP);
    form->addRow(tr("Min-p"), m_minP);
    form->addRow(tr("Repetition penalty"), m_repetition);
    form->addRow(tr("Presence penalty"), m_presence);
    form->addRow(tr("Seed"), m_seed);
    auto* reset = new QPushButton(tr("Reset to defaults"), sampling);
    reset->setObjectName(QStringLiteral("resetSamplingButton"));
    form->addRow(QString(), reset);
    column->addWidget(sampling);

    // Where a reply ends: models trained on plain text never write the turn
    // prefixes, so their own paragraph and speaker breaks end a reply.
    auto* ends = new QGroupBox(tr("A reply ends at"), this);
    ends->setObjectName(QStringLiteral("replyEndsBox"));
    auto* endsForm = new QFormLayout(ends);
    m_stopAtBlankLine = new QCheckBox(tr("A blank line"), ends);
    m_stopAtBlankLine->setObjectName(QStringLiteral("stopAtBlankLineCheck"));
    m_stopAtBlankLine->setToolTip(tr("End the reply where the model leaves an empty line (the end of a paragraph "
                                     "or a speech)"));
    m_stopAtSpeaker = new QCheckBox(tr("A new speaker (a line starting “Name:”)"), ends);
    m_stopAtSpeaker->setObjectName(QStringLiteral("stopAtSpeakerCheck"));
    m_stopAtSpeaker->setToolTip(tr("End the reply where a line begins with a name and a colon, such as “JULIET:”"));
    m_maxTokens = makeSpin(ends, "maxTokensBox", 1, 100'000,
                           tr("The longest reply, in tokens; a reply also ends before the context is full"));
    m_maxTokens->setSuffix(tr(" tokens"));
    endsForm->addRow(m_stopAtBlankLine);
    endsForm->addRow(m_stopAtSpeaker);
    endsForm->addRow(tr("At most"), m_maxTokens);
    endsForm->addRow(makeNote(tr("Also where the model starts your next turn, and at its end-of-text token. "
                                 "Chat models with their own format end their turns themselves."),
                              ends));
    column->addWidget(ends);
    connect(reset, &QPushButton::clicked, this, &ChatSettings::resetSampling);
    for (QCheckBox* box : {m_stopAtBlankLine, m_stopAtSpeaker})
        connect(box, &QCheckBox::toggled, this, &ChatSettings::saveSampling);
    for (QDoubleSpinBox* box : {m_temperature, m_topP, m_minP, m_repetition, m_presence})
        connect(box, &QDoubleSpinBox::valueChanged, this, &ChatSettings::saveSampling);
    for (QSpinBox* box : {m_topK, m_maxTokens, m_seed}) connect(box, &QSpinBox::valueChanged, this, &ChatSettings::saveSampling);

    auto* format = new QGroupBox(tr("Conversation"), this);
    auto* formatColumn = new QVBoxLayout(format);
    formatColumn->addWidget(new QLabel(tr("Text before the conversation"), format));
    m_system = new QPlainTextEdit(format);
    m_system->setObjectName(QStringLiteral("systemEdit"));
    m_system->setPlaceholderText(tr("Optional: a scene, a cast, or a few example exchanges the model reads first"));
    m_system->setTabChangesFocus(true);
    m_system->setFixedHeight(m_system->fontMetrics().lineSpacing() * 4 + 14);
    formatColumn->addWidget(m_system);
    auto* prefixes = new QFormLayout;
    m_userPrefix = new QLineEdit(format);
    m_userPrefix->setObjectName(QStringLiteral("userPrefixEdit"));
    m_userPrefix->setToolTip(tr("What starts your turns; the model's reply ends where it starts one"));
    m_assistantPrefix = new QLineEdit(format);
    m_assistantPrefix->setObjectName(QStringLiteral("assistantPrefixEdit"));
    m_assistantPrefix->setToolTip(tr("What starts the model's turns"));
    prefixes->addRow(tr("Your turns"), m_userPrefix);
    prefixes->addRow(tr("Its turns"), m_assistantPrefix);
    formatColumn->addLayout(prefixes);
    formatColumn->addWidget(makeNote(tr("The model reads plain text: this text, then a line per turn that starts with "
                                        "its prefix, as crucible-cli chat writes it. For Shakespeare, try “ROMEO: ” "
                                        "and “JULIET: ”."),
                                     format));
    column->addWidget(format);
    column->addStretch(1);
    connect(m_system, &QPlainTextEdit::textChanged, this, &ChatSettings::formatEdited);
    connect(m_userPrefix, &QLineEdit::textEdited, this, &ChatSettings::formatEdited);
    connect(m_assistantPrefix, &QLineEdit::textEdited, this, &ChatSettings::formatEdited);
    restoreSampling();
}

SamplingConfig ChatSettings::sampling() const
{
    SamplingConfig s;
    s.temperature = float(m_temperature->value());
    s.top_k = m_topK->value();
    s.top_p = float(m_topP->value());
    s.min_p = float(m_minP->value());
    s.repetition_penalty = float(m_repetition->value());
    s.presence_penalty = float(m_presence->value());
    s.seed = uint64_t(m_seed->value());
    return s;
}

int ChatSettings::maxNewTokens() const { return m_maxTokens->value(); }

ChatStopRules ChatSettings::stopRules() const
{
    ChatStopRules rules;
    rules.blank_line = m_stopAtBlankLine->isChecked();
    rules.speaker_line = m_stopAtSpeaker->isChecked();
    rules.max_reply_tokens = m_maxTokens->value();
    return rules;
}

void ChatSettings::resetSampling()
{
    m_temperature->setValue(kTemperature);
    m_topK->setValue(kTopK);
    m_topP->setValue(kTopP);
    m_minP->setValue(kMinP);
    m_repetition->setValue(kRepetition);
    m_presence->setValue(kPresence);
    m_maxTokens->setValue(kMaxNewTokens);
    m_seed->setValue(kSeed);
    const ChatStopRules defaults;
    m_stopAtBlankLine->setChecked(defaults.blank_line);
    m_stopAtSpeaker->setChecked(defaults.speaker_line);
}

void ChatSettings::restoreSampling()
{
    const QSettings s;
    auto get = [&s](const char* key, double fallback) {
        return s.value(QStringLiteral("chat/") + QLatin1String(key), fallback).toDouble();
    };
    const QSignalBlocker b1(m_temperature), b2(m_topK), b3(m_topP), b4(m_minP), b5(m_repetition), b6(m_presence),
        b7(m_maxTokens), b8(m_seed), b9(m_stopAtBlankLine), b10(m_stopAtSpeaker);
    m_temperature->setValue(get("temperature", kTemperature));
    m_topK->setValue(int(get("topK", kTopK)));
    m_topP->setValue(get("topP", kTopP));
    m_minP->setValue(get("minP", kMinP));
    m_repetition->setValue(get("repetitionPenalty", kRepetition));
    m_presence->setValue(get("presencePenalty", kPresence));
    m_maxTokens->setValue(int(get("maxNewTokens", kMaxNewTokens)));
    m_seed->setValue(int(get("seed", kSeed)));
    const ChatStopRules defaults;
    m_stopAtBlankLine->setChecked(s.value(QStringLiteral("chat/stopAtBlankLine"), defaults.blank_line).toBool());
    m_stopAtSpeaker->setChecked(s.value(QStringLiteral("chat/stopAtSpeaker"), defaults.speaker_line).toBool());
}

void ChatSettings::saveSampling() const
{
    QSettings s;
    s.setValue(QStringLiteral("chat/temperature"), m_temperature->value());
    s.setValue(QStringLiteral("chat/topK"), m_topK->value());
    s.setValue(QStringLiteral("chat/topP"), m_topP->value());
    s.setValue(QStringLiteral("chat/minP"), m_minP->value());
    s.setValue(QStringLiteral("chat/repetitionPenalty"), m_repetition->value());
    s.setValue(QStringLiteral("chat/presencePenalty"), m_presence->value());
    s.setValue(QStringLiteral("chat/maxNewTokens"), m_maxTokens->value());
    s.setValue(QStringLiteral("chat/seed"), m_seed->value());
    s.setValue(QStringLiteral("chat/stopAtBlankLine"), m_stopAtBlankLine->isChecked());
    s.setValue(QStringLiteral("chat/stopAtSpeaker"), m_stopAtSpeaker->isChecked());
}

QString ChatSettings::system() const { return m_system->toPlainText(); }
QString ChatSettings::userPrefix() const { return m_userPrefix->text(); }
QString ChatSettings::assistantPrefix() const { return m_assistantPrefix->text(); }

void ChatSettings::showFormat(const ChatConversation& c)
{
    const QSignalBlocker b1(m_system), b2(m_userPrefix), b3(m_assistantPrefix);
    m_system->setPlainText(c.system);
    m_userPrefix->setText(c.userPrefix);
    m_assistantPrefix->setText(c.assistantPrefix);
}

void ChatSettings::setFormatLocked(bool locked)
{
    m_system->setReadOnly(locked);
    m_userPrefix->setReadOnly(locked);
    m_assistantPrefix->setReadOnly(locked);
}

} // namespace crucible::ui
