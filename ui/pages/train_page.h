// Train page: start, pause, resume and stop a run, and watch it. The settings
// form sits on the left; on the right, the latest numbers, live charts (loss
// with validation, learning rate, gradient norm, tokens/s, MFU, memory), the
// text samples written at each evaluation, and a log. Start stays disabled,
// with the reasons written under it, while the configuration cannot run.
#pragma once

#include "core/train/metrics.h"
#include "core/train/training_sink.h"

#include <QElapsedTimer>
#include <QTimer>
#include <QStringList>
#include <QVector>
#include <QWidget>

class QLabel;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QTabWidget;
class QTextBrowser;

namespace crucible::ui {

class AppContext;
class ChartControls;
class LiveChart;
class MessageBanner;
class TrainSettings;
class ValueLabel;

class TrainPage : public QWidget {
    Q_OBJECT
public:
    explicit TrainPage(AppContext& context, QWidget* parent = nullptr);

    // Why Start is disabled right now; empty when a run can start.
    QStringList blockingReasons() const;

    QPushButton* startButton() const { return m_start; }
    QPushButton* pauseButton() const { return m_pause; }
    QPushButton* stopButton() const { return m_stop; }
    LiveChart* lossChart() const { return m_plots.front().chart; }
    LiveChart* memoryChart() const { return m_memoryChart; }
    int memoryEstimateSeries() const { return m_estimateSeries; }
    QList<LiveChart*> charts() const;

public slots:
    void start();
    void togglePause();
    void stop();

private:
    QWidget* buildControls();
    QWidget* buildMonitor();
    void updateControls();
    void clearMonitor();
    void loadHistory(const QString& runDir);
    void onRunStarting(const QString& runDir, bool resume);
    void onStarted(const RunInfo& info);
    void onSteps(const QVector<StepMetrics>& steps);
    void showLatestNumbers();
    void onEval(const EvalMetrics& eval);
    void onSample(qint64 step, const QString& prompt, const QString& text);
    void onFinished(const RunSummary& summary);
    void log(const QString& line);
    void setTile(int tile, const QString& value);
    QString trainingStatus() const;

    AppContext& m_context;
    TrainSettings* m_settings;
    MessageBanner* m_banner;
    QPushButton* m_start;
    QPushButton* m_pause;
    QPushButton* m_stop;
    ValueLabel* m_status;
    QProgressBar* m_progress;
    ValueLabel* m_eta;
    QLabel* m_blocked;
    QVector<ValueLabel*> m_tiles;
    ChartControls* m_controls;
    // Each chart with the metric of each of its series (the table in train_page.cpp).
    struct Plot {
        LiveChart* chart;
        std::vector<Metric> series;
    };
    std::vector<Plot> m_plots;
    // The memory chart's dashed line: the run's estimate (RunInfo), one point
    // per measured step so it spans the same steps; 0 until a run starts.
    LiveChart* m_memoryChart = nullptr;
    int m_estimateSeries = -1;
    double m_estimateShown = 0.0;
    QTabWidget* m_tabs;
    QTextBrowser* m_samples;
    QPlainTextEdit* m_log;

    // Progress of the run on screen.
    int64_t m_firstStep = 0;        // step the run (or resume) started from
    int64_t m_totalSteps = 0;
    int64_t m_lastStep = 0;
    int64_t m_statusStep = -1;   // the last step when a status (evaluating, sampling...) was shown
    double m_lastElapsed = 0.0;     // training time of the last step
    double m_firstElapsed = -1.0;   // training time of the first step seen live
    int64_t m_firstLiveStep = 0;
    QString m_runName;
    StepMetrics m_latest;           // newest step, shown by m_numbersTimer
    QTimer m_numbersTimer;
};

} // namespace crucible::ui
