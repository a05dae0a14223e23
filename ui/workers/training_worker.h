// TrainingWorker: runs a Trainer on its own QThread.
//
// run() arrives through a queued signal and blocks this worker's thread for
// the whole run, so its event loop cannot deliver a queued "stop" until the
// run is over. Stop and pause are therefore thread-safe methods that reach the
// Trainer's atomic flags directly (the trainer honours them between steps);
// a request made before the Trainer exists is remembered and applied when it
// starts.
#pragma once

#include "ui/workers/training_events.h"

#include <QObject>

#include <mutex>

namespace crucible {
class Trainer;
}

namespace crucible::ui {

class TrainingSinkAdapter;

class TrainingWorker : public QObject {
    Q_OBJECT
public:
    explicit TrainingWorker(QObject* parent = nullptr);
    ~TrainingWorker() override;

    // Lives in the worker's thread with the worker; connect to its signals.
    TrainingSinkAdapter* sink() const { return m_sink; }

    // Thread-safe, called from the GUI thread.
    void prepare();   // forget requests left over from a previous run
    void requestStop();
    void requestPause(bool paused);

public slots:
    void run(const crucible::ui::TrainingRequest& request);

private:
    TrainingSinkAdapter* m_sink;
    std::mutex m_mutex;
    Trainer* m_trainer = nullptr;
    bool m_stopRequested = false;
    bool m_pauseRequested = false;
};

} // namespace crucible::ui
