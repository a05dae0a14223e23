// Small helpers the pages share to build forms: a page heading, spin boxes
// with the project's defaults, and a label that wraps and can be selected.
#pragma once

#include <QString>

class QComboBox;
class QLabel;
class QSpinBox;
class QWidget;
class QVBoxLayout;

namespace crucible::ui {

class NumberBox;

// A heading with a one-line explanation under it, added to `layout`.
void addPageHeader(QVBoxLayout* layout, const QString& title, const QString& subtitle);

QSpinBox* makeSpin(QWidget* parent, const char* objectName, int min, int max, const QString& tip,
                   const QString& specialValueText = QString());
NumberBox* makeNumber(QWidget* parent, const char* objectName, double min, double max, const QString& tip,
                      bool logStep = false);
QLabel* makeNote(const QString& text, QWidget* parent);

// Selects the combo entry whose data is `value` (a string).
void selectData(QComboBox* combo, const QString& value);

} // namespace crucible::ui
