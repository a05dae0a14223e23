#include "ui/workers/training_controller.h"

#include "ui/workers/training_sink_adapter.h"
#include "ui/workers/training_worker.h"

namespace crucible::ui {

TrainingController::TrainingController(QObject* parent)
    : QObject(parent), m_worker(new TrainingWorker), m_thread(m_worker, QStringLiteral("training"))
{
    registerTrainingMetaTypes();
    connect(this, &TrainingController::runRequested, m_worker, &TrainingWorker::run, Qt::QueuedConnection);

    // Everything from the sink is emitted on the training thread: queue it.
    const TrainingSinkAdapter* sink = m_worker->sink();
    connect(sink, &TrainingSinkAdapter::started, this, [this](const RunInfo& info) {
        m_info = info;
        setState(State::Running);
        emit started(info);
    }, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::statusChanged, this, &TrainingController::statusChanged, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::phaseChanged, this, &TrainingController::phaseChanged, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::stepsReady, this, &TrainingController::stepsReceived, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::evalReady, this, &TrainingController::evalReceived, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::sampleReady, this, &TrainingController::sampleReceived, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::checkpointWritten, this, &TrainingController::checkpointWritten,
            Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::warningRaised, this, &TrainingController::warningRaised, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::pausedChanged, this, [this](bool paused) {
        if (m_state != State::Stopping) setState(paused ? State::Paused : State::Running);
        emit pausedChanged(paused);
    }, Qt::QueuedConnection);
    connect(sink, &TrainingSinkAdapter::finished, this, [this](const RunSummary& summary) {
        setState(State::Idle);
        emit finished(summary);
    }, Qt::QueuedConnection);
}

TrainingController::~TrainingController()
{
    m_worker->requestStop();   // then m_thread quits and waits
}

void TrainingController::setState(State s)
{
    if (s == m_state) return;
    m_state = s;
    emit stateChanged(s);
}

void TrainingController::start(const RunConfig& config, const QString& runDir, bool resume, const QString& cacheDir)
{
    if (isActive()) return;
    m_runDir = runDir;
    m_config = config;
    m_resume = resume;
    m_info = RunInfo{};
    m_worker->prepare();
    setState(State::Preparing);
    emit runStarting(runDir, resume);
    emit runRequested(TrainingRequest{config, runDir, cacheDir, resume});
}

void TrainingController::pause()
{
    if (m_state == State::Running || m_state == State::Preparing) m_worker->requestPause(true);
}

void TrainingController::resume()
{
    if (isActive()) m_worker->requestPause(false);
}

void TrainingController::stop()
{
    if (!isActive() || m_state == State::Stopping) return;
    m_worker->requestStop();
    setState(State::Stopping);
}

} // namespace crucible::ui
