#include "ui/benchmark/event_loop_probe.h"

#include <algorithm>
#include <cmath>

namespace crucible::ui {

EventLoopProbe::EventLoopProbe(int intervalMs, QObject* parent) : QObject(parent), m_intervalMs(intervalMs)
{
    m_timer.setTimerType(Qt::PreciseTimer);
    m_timer.setInterval(intervalMs);
    connect(&m_timer, &QTimer::timeout, this, &EventLoopProbe::tick);
}

void EventLoopProbe::start()
{
    m_lagMs.clear();
    m_lagMs.reserve(1 << 16);
    m_clock.start();
    m_lastNs = m_clock.nsecsElapsed();
    m_timer.start();
}

void EventLoopProbe::stop() { m_timer.stop(); }

void EventLoopProbe::tick()
{
    const qint64 now = m_clock.nsecsElapsed();
    const double late = double(now - m_lastNs) / 1e6 - m_intervalMs;
    m_lagMs.push_back(std::max(0.0, late));
    m_lastNs = now;
}

EventLoopProbe::Stats EventLoopProbe::stats() const
{
    Stats s;
    s.ticks = int(m_lagMs.size());
    if (m_lagMs.empty()) return s;
    std::vector<double> sorted = m_lagMs;
    std::sort(sorted.begin(), sorted.end());
    auto at = [&](double q) { return sorted[size_t(std::min<double>(sorted.size() - 1, std::floor(q * double(sorted.size()))))]; };
    s.p50_ms = at(0.50);
    s.p99_ms = at(0.99);
    s.max_ms = sorted.back();
    return s;
}

} // namespace crucible::ui
