// TrainingSinkAdapter: the trainer's TrainingSink turned into Qt signals.
//
// It is called on the training thread and emits there; receivers in the GUI
// thread get the events through queued connections. Step metrics arrive as
// fast as the model trains (hundreds per second for a tiny model), so they
// are emitted in batches through a BatchThrottle (≤ 30 a second). Any other
// event first flushes the pending steps, so the GUI always sees events in the
// trainer's order.
#pragma once

#include "ui/workers/batch_throttle.h"
#include "ui/workers/training_events.h"

#include <QObject>

#include <chrono>

namespace crucible::ui {

class TrainingSinkAdapter : public QObject, public TrainingSink {
    Q_OBJECT
public:
    explicit TrainingSinkAdapter(QObject* parent = nullptr);

    // Shortest gap between two step batches (default 33 ms: ≤ 30 per second).
    void setMinimumInterval(std::chrono::milliseconds interval) { m_steps.setInterval(interval); }

    void on_started(const RunInfo& info) override;
    void on_status(const std::string& what) override;
    void on_phase(TrainerPhase phase) override;
    void on_step(const StepMetrics& m) override;
    void on_eval(const EvalMetrics& e) override;
    void on_sample(int64_t step, const std::string& prompt, const std::string& text) override;
    void on_checkpoint(int64_t step, const std::string& path) override;
    void on_warning(const std::string& message) override;
    void on_paused(bool paused) override;
    void on_finished(const RunSummary& summary) override;

signals:
    void started(const crucible::RunInfo& info);
    void statusChanged(const QString& status);
    void phaseChanged(crucible::TrainerPhase phase);
    void stepsReady(const QVector<crucible::StepMetrics>& steps);
    void evalReady(const crucible::EvalMetrics& eval);
    void sampleReady(qint64 step, const QString& prompt, const QString& text);
    void checkpointWritten(qint64 step, const QString& path);
    void warningRaised(const QString& message);
    void pausedChanged(bool paused);
    void finished(const crucible::RunSummary& summary);

private:
    void flush();

    BatchThrottle<StepMetrics> m_steps;
};

} // namespace crucible::ui
