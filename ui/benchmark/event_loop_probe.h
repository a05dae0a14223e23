// EventLoopProbe: how responsive the GUI thread is. A precise timer ticks
// every few milliseconds; each tick records how late it fired. A lag of tens
// of milliseconds is a stutter the user sees; the percentiles say how often.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QTimer>

#include <vector>

namespace crucible::ui {

class EventLoopProbe : public QObject {
    Q_OBJECT
public:
    explicit EventLoopProbe(int intervalMs = 10, QObject* parent = nullptr);

    void start();
    void stop();

    struct Stats {
        int ticks = 0;
        double p50_ms = 0.0, p99_ms = 0.0, max_ms = 0.0;
    };
    Stats stats() const;

private:
    void tick();

    QTimer m_timer;
    QElapsedTimer m_clock;
    qint64 m_lastNs = 0;
    int m_intervalMs;
    std::vector<double> m_lagMs;
};

} // namespace crucible::ui
