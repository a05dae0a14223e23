// AppContext: what the pages share. One RunConfig (the model, data and
// training settings every page edits), the training controller, the devices,
// where runs and caches live, and the run the user is looking at. A page gets
// the context from the main window's page table and talks to the others only
// through it.
#pragma once

#include <QObject>
#include <QString>

namespace crucible::ui {

class DeviceInventory;
class RunConfigModel;
class TrainingController;

class AppContext : public QObject {
    Q_OBJECT
public:
    explicit AppContext(QObject* parent = nullptr);
    ~AppContext() override;

    RunConfigModel* config() const { return m_config; }
    TrainingController* training() const { return m_training; }
    DeviceInventory* devices() const { return m_devices; }

    // New runs go here; default_runs_dir() unless set (--runs-dir, tests).
    QString runsDir() const { return m_runsDir; }
    void setRunsDir(const QString& dir);
    QString cacheDir() const { return m_cacheDir; }

    // The run last trained, opened or resumed: what a Chat page would load.
    QString currentRun() const { return m_currentRun; }
    void setCurrentRun(const QString& runDir);

    // Loads a run's configuration into the pages and shows its history on the
    // Train page. Returns false with *error set when config.json is unreadable.
    bool openRun(const QString& runDir, QString* error);

    void requestPage(const QString& name) { emit pageRequested(name); }
    void notifyRunsChanged() { emit runsChanged(); }

signals:
    void currentRunChanged(const QString& runDir);
    void runOpened(const QString& runDir);
    void runsDirChanged(const QString& dir);
    void runsChanged();
    void pageRequested(const QString& name);

private:
    RunConfigModel* m_config;
    TrainingController* m_training;
    DeviceInventory* m_devices;
    QString m_runsDir, m_cacheDir, m_currentRun;
};

} // namespace crucible::ui
