// TrainingController: the GUI thread's handle on training. It owns the
// training thread and its worker, turns Start/Pause/Resume/Stop into worker
// requests, tracks the run's state, and re-emits the worker's events on the
// GUI thread for any page that wants them (Train shows them, Runs refreshes
// when a run ends, the main window asks before closing during a run).
#pragma once

#include "ui/workers/training_events.h"
#include "ui/workers/worker_thread.h"

#include <QObject>
#include <QThread>

namespace crucible::ui {

class TrainingWorker;

class TrainingController : public QObject {
    Q_OBJECT
public:
    enum class State { Idle, Preparing, Running, Paused, Stopping };
    Q_ENUM(State)

    explicit TrainingController(QObject* parent = nullptr);
    // Stops a run still going and waits for the thread: only reached at exit,
    // after the main window has already stopped the run with a progress dialog.
    ~TrainingController() override;

    State state() const { return m_state; }
    bool isActive() const { return m_state != State::Idle; }
    QString runDir() const { return m_runDir; }
    const RunConfig& runConfig() const { return m_config; }
    const RunInfo& runInfo() const { return m_info; }
    bool resuming() const { return m_resume; }

public slots:
    // Starts a new run in runDir (or continues it when resume is set). Ignored
    // while a run is active.
    void start(const crucible::RunConfig& config, const QString& runDir, bool resume = false,
               const QString& cacheDir = QString());
    void pause();
    void resume();
    void stop();

signals:
    void stateChanged(crucible::ui::TrainingController::State state);
    // Emitted on start(), before any engine event: pages clear their charts.
    void runStarting(const QString& runDir, bool resume);
    void started(const crucible::RunInfo& info);
    void statusChanged(const QString& status);   // what the run is doing, for people
    void phaseChanged(crucible::TrainerPhase phase);   // the same, for views to switch on
    void stepsReceived(const QVector<crucible::StepMetrics>& steps);
    void evalReceived(const crucible::EvalMetrics& eval);
    void sampleReceived(qint64 step, const QString& prompt, const QString& text);
    void checkpointWritten(qint64 step, const QString& path);
    void warningRaised(const QString& message);
    void pausedChanged(bool paused);
    void finished(const crucible::RunSummary& summary);

    void runRequested(const crucible::ui::TrainingRequest& request);   // to the worker

private:
    void setState(State s);

    TrainingWorker* m_worker;
    WorkerThread m_thread;   // after m_worker: it takes the worker onto the thread
    State m_state = State::Idle;
    QString m_runDir;
    RunConfig m_config;
    RunInfo m_info;
    bool m_resume = false;
};

} // namespace crucible::ui
