// BenchmarkController: the GUI thread's handle on a BenchmarkWorker. Start
// queues a run of suites on the worker's thread, Stop cancels it within one
// measurement; the worker's signals arrive here queued, on the GUI thread.
#pragma once

#include "ui/workers/benchmark_worker.h"
#include "ui/workers/worker_thread.h"

#include <QObject>

namespace crucible::ui {

class BenchmarkController : public QObject {
    Q_OBJECT
public:
    explicit BenchmarkController(QObject* parent = nullptr);
    ~BenchmarkController() override;

    bool isRunning() const { return m_running; }
    bool isStopping() const { return m_stopping; }
    void start(const BenchmarkRequest& request);
    void stop();

signals:
    void runRequested(const crucible::ui::BenchmarkRequest& request);   // to the worker
    void runningChanged(bool running);
    void machineReady(const crucible::bench::MachineFacts& machine);
    void suiteStarted(const QString& suite, const QString& device);
    void rowsReceived(const QVector<crucible::bench::Row>& rows);
    void progressed(const QString& suite, double fraction, const QString& what);
    void noted(const QString& suite, const QString& text);
    void suiteFinished(const QString& suite, crucible::bench::Outcome outcome, const QString& message);
    void finished(bool cancelled);

private:
    BenchmarkWorker* m_worker;
    WorkerThread m_thread;
    bool m_running = false;
    bool m_stopping = false;
};

} // namespace crucible::ui
