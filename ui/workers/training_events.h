// The engine's training events as Qt meta-types, so they can travel through
// queued signals from the training thread to the GUI thread.
#pragma once

#include "core/train/run_config.h"
#include "core/train/training_sink.h"

#include <QMetaType>
#include <QString>
#include <QVector>

namespace crucible::ui {

// What the GUI asks the training worker to do.
struct TrainingRequest {
    RunConfig config;
    QString runDir;
    QString cacheDir;      // empty = the engine's default
    bool resume = false;
};

// Registers the types above once; safe to call repeatedly.
void registerTrainingMetaTypes();

} // namespace crucible::ui

Q_DECLARE_METATYPE(crucible::RunInfo)
Q_DECLARE_METATYPE(crucible::TrainerPhase)
Q_DECLARE_METATYPE(crucible::StepMetrics)
Q_DECLARE_METATYPE(crucible::EvalMetrics)
Q_DECLARE_METATYPE(crucible::RunSummary)
Q_DECLARE_METATYPE(crucible::ui::TrainingRequest)
