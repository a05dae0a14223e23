// SampleRing: a fixed-capacity ring buffer of chart samples. Appending never
// allocates once the buffer is full; the oldest samples scroll out.
#pragma once

#include <cstddef>
#include <vector>

namespace crucible::ui {

struct ChartSample {
    double step = 0.0;
    double time = 0.0;    // seconds
    double value = 0.0;
};

class SampleRing {
public:
    explicit SampleRing(size_t capacity) : m_data(capacity > 0 ? capacity : 1) {}

    void push(const ChartSample& s)
    {
        const size_t cap = m_data.size();
        m_data[(m_head + m_size) % cap] = s;
        if (m_size < cap) {
            ++m_size;
        } else {
            m_head = (m_head + 1) % cap;
            ++m_dropped;
        }
    }
    void clear()
    {
        m_head = m_size = m_dropped = 0;
    }

    size_t size() const { return m_size; }
    size_t capacity() const { return m_data.size(); }
    size_t dropped() const { return m_dropped; }   // samples that scrolled out
    bool empty() const { return m_size == 0; }
    // 0 is the oldest sample kept.
    const ChartSample& operator[](size_t i) const { return m_data[(m_head + i) % m_data.size()]; }
    const ChartSample& back() const { return (*this)[m_size - 1]; }

private:
    std::vector<ChartSample> m_data;
    size_t m_head = 0, m_size = 0, m_dropped = 0;
};

} // namespace crucible::ui
