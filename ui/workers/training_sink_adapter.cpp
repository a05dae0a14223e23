#include "ui/workers/training_sink_adapter.h"

namespace crucible::ui {

namespace {

// Trainer text is UTF-8 but a text sample may end inside a character.
QString fromUtf8(const std::string& s) { return QString::fromUtf8(s.data(), qsizetype(s.size())); }

} // namespace

void registerTrainingMetaTypes()
{
    qRegisterMetaType<crucible::RunInfo>();
    qRegisterMetaType<crucible::TrainerPhase>();
    qRegisterMetaType<crucible::StepMetrics>();
    qRegisterMetaType<crucible::EvalMetrics>();
    qRegisterMetaType<crucible::RunSummary>();
    qRegisterMetaType<crucible::ui::TrainingRequest>();
    qRegisterMetaType<QVector<crucible::StepMetrics>>();
}

TrainingSinkAdapter::TrainingSinkAdapter(QObject* parent)
    : QObject(parent), m_steps([this](const QVector<StepMetrics>& batch) { emit stepsReady(batch); })
{
    registerTrainingMetaTypes();
}

void TrainingSinkAdapter::flush() { m_steps.flush(); }

void TrainingSinkAdapter::on_step(const StepMetrics& m) { m_steps.add(m); }

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

void TrainingSinkAdapter::on_phase(TrainerPhase phase)
{
    flush();
    emit phaseChanged(phase);
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
