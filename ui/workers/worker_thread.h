// WorkerThread: a QThread that runs one worker QObject, the set-up every
// engine-facing worker shares (training, chat, corpus statistics, run scans).
//
// The worker is moved onto the thread, deleted there when the thread ends,
// and the thread starts at once; the owner talks to the worker through queued
// signals. Destroying the WorkerThread quits the thread's event loop and
// waits for it, so a worker in the middle of a long call must first be asked
// to stop by its own thread-safe means (requestStop(), cancel()).
#pragma once

#include <QThread>

namespace crucible::ui {

class WorkerThread {
public:
    WorkerThread(QObject* worker, const QString& name)
    {
        m_thread.setObjectName(name);
        worker->moveToThread(&m_thread);
        QObject::connect(&m_thread, &QThread::finished, worker, &QObject::deleteLater);
        m_thread.start();
    }
    ~WorkerThread()
    {
        m_thread.quit();
        m_thread.wait();
    }
    WorkerThread(const WorkerThread&) = delete;
    WorkerThread& operator=(const WorkerThread&) = delete;

    QThread* thread() { return &m_thread; }

private:
    QThread m_thread;
};

} // namespace crucible::ui
