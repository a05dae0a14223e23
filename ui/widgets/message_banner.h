// MessageBanner: an inline message above a page's content (error, warning,
// information) that the user reads without a modal dialog interrupting them,
// and dismisses when done. Errors from the engine land here with the
// engine's own sentence, which says what failed and what to change.
#pragma once

#include <QFrame>

class QLabel;
class QToolButton;

namespace crucible::ui {

class MessageBanner : public QFrame {
    Q_OBJECT
public:
    enum class Kind { Info, Success, Warning, Error };

    explicit MessageBanner(QWidget* parent = nullptr);

    void showMessage(Kind kind, const QString& title, const QString& details = QString());
    void clear();
    QString text() const;   // title and details, for tests and logs
    Kind kind() const { return m_kind; }

signals:
    void dismissed();

private:
    QLabel* m_icon;
    QLabel* m_title;
    QLabel* m_details;
    QToolButton* m_close;
    Kind m_kind = Kind::Info;
};

} // namespace crucible::ui
