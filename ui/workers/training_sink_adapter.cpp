#include "ui/workers/training_sink_adapter.h"

namespace crucible::ui {

namespace {

// Trainer text is UTF-8 but a text sample may end inside a character.
QString fromUtf8(const std::string& s) { return QString::fromUtf8(s.data(), qsizetype(s.size())); }

} // namespace

void registerTrainingMetaTypes()
{
    qRegisterMetaType<crucible::RunInfo>();
    qRegisterMetaType<crucible::StepMetrics>();
    qRegisterMetaType<crucible::EvalMetrics>();
    qRegisterMetaType<crucible::RunSummary>();
    qRegisterMetaType<crucible::ui::TrainingRequest>();
    qRegisterMetaType<QVector<crucible::StepMetrics>>();
}

TrainingSinkAdapter::TrainingSinkAdapter(QObject* parent) : QObject(parent) { registerTrainingMetaTypes(); }

void TrainingSinkAdapter::flush()
{
    QVector<StepMetrics> batch;
    {
        std::lock_guard lock(m_mutex);
        if (m_pending.isEmpty()) return;
        batch.swap(m_pending);
        m_lastEmit = std::chrono::steady_clock::now();
    }
    emit stepsReady(batch);
}

void TrainingSinkAdapter::on_step(const StepMetrics& m)
{
    bool due = false;
    {
        std::lock_guard lock(m_mutex);
        m_pending.push_back(m);
        due = !m_lastEmit || std::chrono::steady_clock::now() - *m_lastEmit >= m_interval;
    }
    if (due) flush();
}

void TrainingSinkAdapter::on_started(const RunInfo& info)
{
    flush();
    emit started(info);
}

void TrainingSinkAdapter::on_status(const std::string& what)
{
    flush();
    emit statusChanged(fromUtf8(what));
}

void TrainingSinkAdapter::on_eval(const EvalMetrics& e)
{
    flush();
    emit evalReady(e);
}

void TrainingSinkAdapter::on_sample(int64_t step, const std::string& prompt, const std::string& text)
{
    flush();
    emit sampleReady(step, fromUtf8(prompt), fromUtf8(text));
}

void TrainingSinkAdapter::on_checkpoint(int64_t step, const std::string& path)
{
    flush();
    emit checkpointWritten(step, fromUtf8(path));
}

void TrainingSinkAdapter::on_warning(const std::string& message)
{
    flush();
    emit warningRaised(fromUtf8(message));
}

void TrainingSinkAdapter::on_paused(bool paused)
{
    flush();
    emit pausedChanged(paused);
}

void TrainingSinkAdapter::on_finished(const RunSummary& summary)
{
    flush();
    emit finished(summary);
}

} // namespace crucible::ui
