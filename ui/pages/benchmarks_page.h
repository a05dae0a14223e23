// Benchmarks page: the suites of core/bench run from the app. Pick suites, a
// device and a size, press Run: each suite runs on a worker thread (as a
// training run does), with a progress bar per suite, and its rows plot live
// as they arrive, beside the hardware limit and the PyTorch peer where they
// apply. Every run is saved as a results file; a saved file (one measured on
// a GPU server, say) opens here, and a second one overlays it with a ratio
// per point. The claims tab checks each claim of the original text against
// the measured rows.
#pragma once

#include "core/bench/results_file.h"
#include "core/bench/suite.h"

#include <QString>
#include <QWidget>

#include <map>
#include <optional>

class QCheckBox;
class QComboBox;
class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QTabWidget;
class QTableWidget;
class QTreeWidget;
class QTreeWidgetItem;

namespace crucible::ui {

class AppContext;
class BenchmarkCharts;
class BenchmarkController;
class ClaimsView;
class MessageBanner;

class BenchmarksPage : public QWidget {
    Q_OBJECT
public:
    explicit BenchmarksPage(AppContext& context, QWidget* parent = nullptr);
    ~BenchmarksPage() override;

    // For tests and the GUI driver.
    BenchmarkController* controller() const { return m_controller; }
    BenchmarkCharts* charts() const { return m_charts; }
    ClaimsView* claims() const { return m_claims; }
    QTableWidget* resultsTable() const { return m_table; }
    MessageBanner* banner() const { return m_banner; }
    QPushButton* runButton() const { return m_run; }
    QPushButton* stopButton() const { return m_stopButton; }
    QProgressBar* progressFor(const QString& suite) const;
    void setSuiteChecked(const QString& suite, bool checked);
    void setSize(bench::SizeClass size);
    void setOptions(const std::map<std::string, std::string>& options) { m_options = options; }
    // Where this run's results are saved (empty until a run starts).
    QString resultsPath() const { return m_resultsPath; }
    const bench::ResultsFile& results() const { return m_results; }

public slots:
    void run();
    void stop();
    // Both show a message on the page instead of throwing when a file cannot be read.
    bool openResults(const QString& path);
    bool compareWith(const QString& path);
    bool exportChart(const QString& pngPath, const QString& csvPath);

private:
    QWidget* buildControls();
    QWidget* buildSuiteList();
    void updateControls();
    void refillSuites();
    void onRows(const QVector<bench::Row>& rows);
    void onSuiteFinished(const QString& suite, bench::Outcome outcome, const QString& message);
    void onFinished(bool cancelled);
    void saveResults();
    void showResults();   // the rows table (and ratios when comparing), built when its tab is looked at
    void fillResultsTable();
    void log(const QString& line);
    void showChartFor(const std::string& suite, const std::string& metric,
                      const std::map<std::string, std::string>& tags);

    AppContext& m_context;
    BenchmarkController* m_controller;
    MessageBanner* m_banner;
    QComboBox* m_device;
    QComboBox* m_size;
    QCheckBox* m_peer;
    QPushButton* m_run;
    QPushButton* m_stopButton;
    QPushButton* m_open;
    QPushButton* m_compare;
    QPushButton* m_exportPng;
    QPushButton* m_exportCsv;
    QLabel* m_status;
    QTreeWidget* m_suites;
    QLabel* m_suiteAbout;   // what the selected suite measures
    std::map<QString, QProgressBar*> m_progress;
    QTabWidget* m_tabs;
    BenchmarkCharts* m_charts;
    ClaimsView* m_claims;
    QTableWidget* m_table;
    QPlainTextEdit* m_log;

    std::map<std::string, std::string> m_options;   // suite option overrides (tests, tiny sizes)
    bench::ResultsFile m_results;                   // the run on screen, or the file opened
    std::optional<bench::ResultsFile> m_compared;   // the second file, overlaid
    QString m_resultsPath;
    QString m_comparedName;
    bool m_tableStale = true;
};

} // namespace crucible::ui
