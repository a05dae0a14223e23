// BatchThrottle: items a worker produces as fast as the engine runs (training
// steps, generated tokens) handed on in batches, at most one batch per
// interval (33 ms by default: ≤ 30 a second, what a screen can show), so a
// fast model never floods the GUI's event loop. The first item after a
// reset goes at once; later ones wait until the interval has passed since the
// last batch; flush() hands on whatever is pending (before any other event,
// so receivers see events in order).
//
// add(), flush(), reset() and setInterval() may be called from any thread;
// the sink runs on the thread that hands the batch on.
#pragma once

#include <QVector>

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <utility>

namespace crucible::ui {

template <class T>
class BatchThrottle {
public:
    using Clock = std::chrono::steady_clock;
    using Sink = std::function<void(const QVector<T>&)>;

    explicit BatchThrottle(Sink sink, std::chrono::milliseconds interval = std::chrono::milliseconds(33))
        : m_sink(std::move(sink)), m_interval(interval)
    {
    }

    void setInterval(std::chrono::milliseconds interval)
    {
        std::lock_guard lock(m_mutex);
        m_interval = interval;
    }

    // Queues an item and hands the batch on when it is due.
    void add(T item)
    {
        bool due = false;
        {
            std::lock_guard lock(m_mutex);
            m_pending.push_back(std::move(item));
            due = !m_last || Clock::now() - *m_last >= m_interval;
        }
        if (due) flush();
    }

    // Hands on what is pending, if anything.
    void flush()
    {
        QVector<T> batch;
        {
            std::lock_guard lock(m_mutex);
            if (m_pending.isEmpty()) return;
            batch.swap(m_pending);
            m_last = Clock::now();
        }
        m_sink(batch);
    }

    // Drops what is pending; the next item goes at once.
    void reset()
    {
        std::lock_guard lock(m_mutex);
        m_pending.clear();
        m_last.reset();
    }

private:
    Sink m_sink;
    std::mutex m_mutex;
    QVector<T> m_pending;
    std::optional<Clock::time_point> m_last;   // none yet: the next item goes at once
    std::chrono::milliseconds m_interval;
};

} // namespace crucible::ui
