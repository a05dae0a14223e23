#include "ui/workers/training_worker.h"

#include "core/train/trainer.h"
#include "ui/workers/training_sink_adapter.h"

namespace crucible::ui {

TrainingWorker::TrainingWorker(QObject* parent) : QObject(parent), m_sink(new TrainingSinkAdapter(this)) {}

TrainingWorker::~TrainingWorker() = default;

void TrainingWorker::prepare()
{
    std::lock_guard lock(m_mutex);
    m_stopRequested = false;
    m_pauseRequested = false;
}

void TrainingWorker::requestStop()
{
    std::lock_guard lock(m_mutex);
    m_stopRequested = true;
    if (m_trainer) m_trainer->request_stop();
}

void TrainingWorker::requestPause(bool paused)
{
    std::lock_guard lock(m_mutex);
    m_pauseRequested = paused;
    if (m_trainer) m_trainer->request_pause(paused);
}

void TrainingWorker::run(const TrainingRequest& request)
{
    TrainerOptions options;
    options.run_dir = request.runDir.toStdString();
    options.resume = request.resume;
    options.cache_dir = request.cacheDir.toStdString();
    Trainer trainer(request.config, options, m_sink);
    {
        std::lock_guard lock(m_mutex);
        m_trainer = &trainer;
        if (m_stopRequested) trainer.request_stop();
        if (m_pauseRequested) trainer.request_pause(true);
    }
    trainer.run();   // never throws; the outcome reaches the GUI through the sink
    std::lock_guard lock(m_mutex);
    m_trainer = nullptr;
}

} // namespace crucible::ui
