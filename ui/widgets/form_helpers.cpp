#include "ui/widgets/form_helpers.h"

#include "ui/widgets/number_box.h"

#include <QComboBox>
#include <QLabel>
#include <QSpinBox>
#include <QVBoxLayout>

namespace crucible::ui {

void addPageHeader(QVBoxLayout* layout, const QString& title, const QString& subtitle)
{
    auto* heading = new QLabel(title);
    heading->setProperty("role", "heading");
    auto* sub = new QLabel(subtitle);
    sub->setProperty("role", "subtitle");
    sub->setWordWrap(true);
    layout->addWidget(heading);
    layout->addWidget(sub);
    layout->addSpacing(4);
}

QSpinBox* makeSpin(QWidget* parent, const char* objectName, int min, int max, const QString& tip,
                   const QString& specialValueText)
{
    auto* s = new QSpinBox(parent);
    s->setObjectName(QString::fromLatin1(objectName));
    s->setRange(min, max);
    s->setToolTip(tip);
    s->setKeyboardTracking(false);   // one change per finished edit, not per keystroke
    s->setAccelerated(true);
    s->setGroupSeparatorShown(true);
    if (!specialValueText.isEmpty()) s->setSpecialValueText(specialValueText);
    s->setMinimumWidth(120);
    s->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    return s;
}

NumberBox* makeNumber(QWidget* parent, const char* objectName, double min, double max, const QString& tip, bool logStep)
{
    auto* n = new NumberBox(parent);
    n->setObjectName(QString::fromLatin1(objectName));
    n->setRange(min, max);
    n->setToolTip(tip);
    n->setLogStepping(logStep);
    if (!logStep) n->setSingleStep(max <= 1.0 ? 0.01 : 1.0);
    n->setMinimumWidth(120);
    n->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
    return n;
}

QLabel* makeNote(const QString& text, QWidget* parent)
{
    auto* l = new QLabel(text, parent);
    l->setWordWrap(true);
    l->setProperty("role", "caption");
    l->setTextInteractionFlags(Qt::TextSelectableByMouse);
    return l;
}

void selectData(QComboBox* combo, const QString& value)
{
    const int i = combo->findData(value);
    if (i >= 0) combo->setCurrentIndex(i);
}

} // namespace crucible::ui
