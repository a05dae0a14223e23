#include "ui/app_context.h"

#include "core/train/run_dir.h"
#include "core/util/paths.h"
#include "kernels/error.h"
#include "ui/models/device_inventory.h"
#include "ui/models/run_config_model.h"
#include "ui/workers/training_controller.h"

namespace crucible::ui {

AppContext::AppContext(QObject* parent)
    : QObject(parent),
      m_config(new RunConfigModel(this)),
      m_training(new TrainingController(this)),
      m_devices(new DeviceInventory(this)),
      m_runsDir(QString::fromStdString(default_runs_dir().string())),
      m_cacheDir(QString::fromStdString(default_cache_dir().string()))
{
}

AppContext::~AppContext() = default;

void AppContext::setRunsDir(const QString& dir)
{
    if (dir == m_runsDir) return;
    m_runsDir = dir;
    emit runsDirChanged(dir);
}

void AppContext::setCurrentRun(const QString& runDir)
{
    if (runDir == m_currentRun) return;
    m_currentRun = runDir;
    emit currentRunChanged(runDir);
}

bool AppContext::openRun(const QString& runDir, QString* error)
{
    try {
        const RunConfig config = RunDirectory(runDir.toStdString()).read_config();
        m_config->setConfig(config);
    } catch (const Error& e) {
        if (error) *error = QString::fromUtf8(e.what());
        return false;
    }
    setCurrentRun(runDir);
    emit runOpened(runDir);
    return true;
}

} // namespace crucible::ui
