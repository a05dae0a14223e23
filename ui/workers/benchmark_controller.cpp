#include "ui/workers/benchmark_controller.h"

namespace crucible::ui {

BenchmarkController::BenchmarkController(QObject* parent)
    : QObject(parent), m_worker(new BenchmarkWorker), m_thread(m_worker, QStringLiteral("benchmarks"))
{
    registerBenchmarkMetaTypes();
    connect(this, &BenchmarkController::runRequested, m_worker, &BenchmarkWorker::run, Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::machineReady, this, &BenchmarkController::machineReady, Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::suiteStarted, this, &BenchmarkController::suiteStarted, Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::rowsReady, this, &BenchmarkController::rowsReceived, Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::progressed, this, &BenchmarkController::progressed, Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::noted, this, &BenchmarkController::noted, Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::suiteFinished, this, &BenchmarkController::suiteFinished,
            Qt::QueuedConnection);
    connect(m_worker, &BenchmarkWorker::allFinished, this, [this](bool cancelled) {
        m_running = false;
        m_stopping = false;
        emit runningChanged(false);
        emit finished(cancelled);
    }, Qt::QueuedConnection);
}

BenchmarkController::~BenchmarkController()
{
    m_worker->requestStop();   // then m_thread quits and waits for the suite to return
}

void BenchmarkController::start(const BenchmarkRequest& request)
{
    if (m_running) return;
    m_worker->prepare();
    m_running = true;
    m_stopping = false;
    emit runningChanged(true);
    emit runRequested(request);
}

void BenchmarkController::stop()
{
    if (!m_running || m_stopping) return;
    m_stopping = true;
    m_worker->requestStop();
    emit runningChanged(true);   // the buttons show "stopping"
}

} // namespace crucible::ui
