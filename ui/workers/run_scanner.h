// RunScanner: the runs on disk, read on a worker thread.
//
// Listing runs reads every run's config.json and the tail of its
// metrics.jsonl; with many runs, or a slow disk, that is more than a frame.
// scan() hands the folders to the worker and returns at once; when the scan
// is done runs() holds the new list and finished() is emitted on the owner's
// thread. A scan asked for while one runs is queued behind it, and only the
// newest scan's result is kept, so a burst of refreshes costs one list.
#pragma once

#include "core/train/run_catalog.h"
#include "ui/workers/worker_thread.h"

#include <QMetaType>
#include <QObject>
#include <QStringList>

#include <memory>
#include <vector>

namespace crucible::ui {

using RunRecords = std::shared_ptr<const std::vector<RunRecord>>;

// Lives on the scanner's thread.
class RunScanWorker : public QObject {
    Q_OBJECT
public slots:
    // The runs of every folder, newest first within each, each run once
    // (folders may overlap; a run is known by its canonical path).
    void scan(quint64 id, const QStringList& folders);
signals:
    void scanned(quint64 id, const crucible::ui::RunRecords& runs);
};

class RunScanner : public QObject {
    Q_OBJECT
public:
    explicit RunScanner(QObject* parent = nullptr);

    void scan(const QStringList& folders);
    bool busy() const { return m_latest != m_done; }
    // The runs of the last scan that finished (empty before the first).
    const std::vector<RunRecord>& runs() const { return *m_runs; }

signals:
    void finished();
    void scanRequested(quint64 id, const QStringList& folders);   // to the worker

private:
    RunScanWorker* m_worker;
    WorkerThread m_thread;   // after m_worker: it takes the worker onto the thread
    quint64 m_latest = 0;    // the newest scan asked for
    quint64 m_done = 0;      // the newest scan finished
    RunRecords m_runs;
};

} // namespace crucible::ui

Q_DECLARE_METATYPE(crucible::ui::RunRecords)
