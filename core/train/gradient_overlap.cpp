#include "core/train/gradient_overlap.h"

#include "kernels/error.h"

#include <algorithm>
#include <chrono>

namespace crucible {

GradientOverlap::GradientOverlap(Communicator& comm, Tensor grads, int64_t bucket_elements)
    : m_comm(comm), m_grads(grads), m_bucket_elements(std::max<int64_t>(1, bucket_elements))
{
    m_thread = std::thread([this] { loop(); });
}

GradientOverlap::~GradientOverlap()
{
    {
        std::lock_guard lock(m_mutex);
        m_quit = true;
    }
    m_wake.notify_all();
    m_thread.join();
}

void GradientOverlap::ready(int64_t begin, int64_t end)
{
    if (end <= begin) return;
    CRUCIBLE_CHECK(m_open_begin < 0 || end == m_open_begin, "gradient spans must arrive adjacent, top down");
    m_open_end = m_open_begin < 0 ? end : m_open_end;
    m_open_begin = begin;
    if (m_open_end - m_open_begin >= m_bucket_elements) {
        post({m_open_begin, m_open_end});
        m_open_begin = m_open_end = -1;
    }
}

void GradientOverlap::post(Bucket b)
{
    m_covered += b.end - b.begin;
    {
        std::lock_guard lock(m_mutex);
        m_queue.push_back(b);
    }
    m_wake.notify_all();
}

void GradientOverlap::finish()
{
    if (m_open_begin >= 0) post({m_open_begin, m_open_end});
    m_open_begin = m_open_end = -1;
    std::unique_lock lock(m_mutex);
    m_idle.wait(lock, [&] { return (m_queue.empty() && !m_busy) || m_error; });
    const int64_t covered = m_covered;
    m_covered = 0;
    if (m_error) {
        std::exception_ptr e = m_error;
        m_error = nullptr;
        m_queue.clear();
        std::rethrow_exception(e);
    }
    CRUCIBLE_CHECK(covered == m_grads.numel(), "the backward reported " + std::to_string(covered) + " of " +
                                                   std::to_string(m_grads.numel()) + " gradient elements");
}

double GradientOverlap::take_busy_seconds()
{
    std::lock_guard lock(m_mutex);
    const double s = m_busy_seconds;
    m_busy_seconds = 0.0;
    return s;
}

void GradientOverlap::loop()
{
    using Clock = std::chrono::steady_clock;
    for (;;) {
        Bucket b{};
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_quit || (!m_queue.empty() && !m_error); });
            if (m_quit) return;
            b = m_queue.front();
            m_queue.pop_front();
            m_busy = true;
        }
        const auto t0 = Clock::now();
        std::exception_ptr failure;
        try {
            m_comm.all_reduce_sum(m_grads.sub(b.begin, Shape{b.end - b.begin}));
        } catch (...) {
            failure = std::current_exception();
        }
        std::lock_guard lock(m_mutex);
        m_busy_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
        m_busy = false;
        if (failure) m_error = failure;
        m_idle.notify_all();
    }
}

} // namespace crucible
