#include "ui/widgets/message_banner.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QToolButton>
#include <QVBoxLayout>

namespace crucible::ui {

MessageBanner::MessageBanner(QWidget* parent) : QFrame(parent)
{
    setObjectName(QStringLiteral("messageBanner"));
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(12, 8, 8, 8);
    row->setSpacing(10);
    m_icon = new QLabel(this);
    m_icon->setFixedWidth(18);
    m_icon->setAlignment(Qt::AlignTop | Qt::AlignHCenter);
    auto* text = new QVBoxLayout;
    text->setSpacing(2);
    m_title = new QLabel(this);
    m_title->setWordWrap(true);
    m_title->setTextInteractionFlags(Qt::TextSelectableByMouse);
    QFont bold = m_title->font();
    bold.setBold(true);
    m_title->setFont(bold);
    m_details = new QLabel(this);
    m_details->setWordWrap(true);
    m_details->setTextInteractionFlags(Qt::TextSelectableByMouse);
    text->addWidget(m_title);
    text->addWidget(m_details);
    m_close = new QToolButton(this);
    m_close->setText(QStringLiteral("✕"));
    m_close->setAutoRaise(true);
    m_close->setToolTip(tr("Dismiss"));
    connect(m_close, &QToolButton::clicked, this, [this] {
        clear();
        emit dismissed();
    });
    row->addWidget(m_icon);
    row->addLayout(text, 1);
    row->addWidget(m_close, 0, Qt::AlignTop);
    hide();
}

void MessageBanner::showMessage(Kind kind, const QString& title, const QString& details)
{
    m_kind = kind;
    const char* colors[][3] = {
        // background, border, text
        {"#eff6ff", "#bfdbfe", "#1e3a8a"},
        {"#f0fdf4", "#bbf7d0", "#14532d"},
        {"#fffbeb", "#fde68a", "#78350f"},
        {"#fef2f2", "#fecaca", "#7f1d1d"},
    };
    const auto* c = colors[int(kind)];
    setStyleSheet(QStringLiteral("QFrame#messageBanner { background: %1; border: 1px solid %2; border-radius: 8px; }"
                                 "QFrame#messageBanner QLabel { color: %3; background: transparent; }")
                      .arg(QLatin1String(c[0]), QLatin1String(c[1]), QLatin1String(c[2])));
    static const char* glyphs[] = {"ℹ", "✓", "⚠", "✖"};
    m_icon->setText(QString::fromUtf8(glyphs[int(kind)]));
    m_title->setText(title);
    m_details->setText(details);
    m_details->setVisible(!details.isEmpty());
    show();
}

void MessageBanner::clear()
{
    m_title->clear();
    m_details->clear();
    hide();
}

QString MessageBanner::text() const
{
    return m_details->text().isEmpty() ? m_title->text() : m_title->text() + QLatin1Char('\n') + m_details->text();
}

} // namespace crucible::ui
