// MainWindow: the page list on the left, the pages on the right, the state of
// the run in the status bar. Pages come from one table (pageSpecs): adding a
// page is one line there. Closing the window during a run asks first, then
// stops the run cleanly (the trainer finishes its step and writes a
// checkpoint) behind a progress dialog; the training thread is never killed.
#pragma once

#include <QHash>
#include <QMainWindow>
#include <QTimer>

#include <functional>
#include <vector>

class QLabel;
class QListWidget;
class QProgressDialog;
class QStackedWidget;

namespace crucible::ui {

class AppContext;
class ValueLabel;

struct PageSpec {
    QString name;      // shown in the list; AppContext::requestPage(name) shows it
    QString icon;      // an icons::page() glyph
    QString toolTip;
    std::function<QWidget*(AppContext&, QWidget*)> create;
};

// The pages, in the order of the page list.
const std::vector<PageSpec>& pageSpecs();

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    explicit MainWindow(AppContext& context, QWidget* parent = nullptr);

    QWidget* page(const QString& name) const { return m_pages.value(name); }
    template <class T>
    T* page() const
    {
        return findChild<T*>();
    }
    QString currentPage() const;
    QListWidget* pageList() const { return m_pageList; }

public slots:
    void showPage(const QString& name);

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void buildMenus();
    void updateRunStatus();
    void loadConfiguration();
    void saveConfiguration();

    AppContext& m_context;
    QListWidget* m_pageList;
    QStackedWidget* m_stack;
    QHash<QString, QWidget*> m_pages;
    ValueLabel* m_runStatus;
    QLabel* m_deviceStatus;
    QProgressDialog* m_stopping = nullptr;
    bool m_closeWhenStopped = false;
    QTimer m_statusTimer;        // the status bar follows the steps at 2 Hz
    qint64 m_latestStep = 0;
};

} // namespace crucible::ui
