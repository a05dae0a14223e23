// Runs page: every run on disk (the runs folder and any folder the user adds)
// with its configuration and final metrics. Open one to load its settings
// into the other pages, resume it, rename it in place, delete it (after
// asking), and tick two or more to overlay any metric on one chart, read from
// each run's metrics.jsonl: Muon against AdamW, one learning rate against
// another. The chart exports as PNG and its data as CSV.
#pragma once

#include "core/train/run_catalog.h"
#include "ui/workers/run_scanner.h"

#include <QHash>
#include <QStringList>
#include <QTimer>
#include <QWidget>

class QComboBox;
class QFileSystemWatcher;
class QLabel;
class QPushButton;
class QStackedWidget;
class QTextBrowser;
class QToolButton;
class QTreeWidget;
class QTreeWidgetItem;

namespace crucible::ui {

class AppContext;
class ChartControls;
class LiveChart;
class MessageBanner;

class RunsPage : public QWidget {
    Q_OBJECT
public:
    explicit RunsPage(AppContext& context, QWidget* parent = nullptr);

    QTreeWidget* table() const { return m_table; }
    LiveChart* compareChart() const { return m_chart; }
    QComboBox* metricCombo() const { return m_metric; }
    // The item of the run in `root`, or null.
    QTreeWidgetItem* itemFor(const QString& root) const;
    QStringList folders() const;
    void addFolder(const QString& folder);
    // True from refresh() until the table shows the scan it asked for.
    bool scanning() const { return m_scanner.busy(); }

public slots:
    // Scans the folders on a worker thread; the table follows when it is done.
    void refresh();
    void openSelected();
    void resumeSelected();
    void renameSelected();
    void deleteSelected();

signals:
    void refreshed();   // the table shows a new scan

protected:
    void showEvent(QShowEvent* event) override;

private:
    QWidget* buildToolbar();
    const RunRecord* selectedRecord() const;
    const RunRecord* recordFor(const QString& root) const;
    void updateButtons();
    void updateDetails();
    void updateComparison();
    void onItemChanged(QTreeWidgetItem* item, int column);
    void rebuildFolderMenu();
    void populate();
    bool isTraining(const QString& root) const;

    AppContext& m_context;
    std::vector<RunRecord> m_records;
    QStringList m_extraFolders;
    struct CachedMetrics {
        qint64 stamp = 0;
        RunMetrics metrics;
    };
    QHash<QString, CachedMetrics> m_metricsCache;
    bool m_populating = false;
    QFileSystemWatcher* m_watcher;
    QTimer m_refreshTimer;
    RunScanner m_scanner;

    MessageBanner* m_banner;
    QToolButton* m_folderButton;
    QPushButton* m_open;
    QPushButton* m_resume;
    QPushButton* m_rename;
    QPushButton* m_delete;
    QLabel* m_foldersLabel;
    QStackedWidget* m_tableStack;
    QTreeWidget* m_table;
    QTextBrowser* m_details;
    QComboBox* m_metric;
    ChartControls* m_controls;
    LiveChart* m_chart;
    QLabel* m_compareHint;
};

} // namespace crucible::ui
