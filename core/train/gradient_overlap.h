// GradientOverlap: the all-reduce of a replica's gradients, issued in buckets
// as the backward completes them, on a communication thread of its own.
//
// The backward of the step's last micro-batch reports each span of the
// layout whose gradients are final (Transformer::set_gradients_ready): the
// head, each layer from the last, the embedding. Adjacent spans are merged
// into buckets of at least `bucket_elements`; each full bucket goes to the
// communication thread, which all-reduces it while the backward works on the
// layers below. finish() sends the rest and waits. The buckets are the same
// on every replica (the same model), so the collectives match; the sums are
// element by element in rank order, so the result is the one whole-buffer
// all-reduce gives, bit for bit.
//
// On a CUDA replica the spans' kernels are only queued when reported: the
// thread's collectives go to the same stream, after them, which keeps the
// order (a side stream with events would let NCCL run beside the backward).
#pragma once

#include "kernels/communicator.h"

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

namespace crucible {

class GradientOverlap {
public:
    static constexpr int64_t kDefaultBucketElements = int64_t(1) << 20;   // 4 MiB of f32

    GradientOverlap(Communicator& comm, Tensor grads, int64_t bucket_elements = kDefaultBucketElements);
    ~GradientOverlap();
    GradientOverlap(const GradientOverlap&) = delete;
    GradientOverlap& operator=(const GradientOverlap&) = delete;

    // [begin, end) of the gradients is final (called from the backward).
    void ready(int64_t begin, int64_t end);
    // Sends what is left and waits for every bucket; rethrows a failed
    // collective. Afterwards the whole gradient buffer is summed.
    void finish();
    // Seconds the communication thread spent in collectives since the last call.
    double take_busy_seconds();

private:
    struct Bucket {
        int64_t begin, end;
    };
    void post(Bucket b);
    void loop();

    Communicator& m_comm;
    Tensor m_grads;
    int64_t m_bucket_elements;
    // The bucket being filled: spans arrive from the top of the layout down.
    int64_t m_open_begin = -1, m_open_end = -1;
    int64_t m_covered = 0;

    std::mutex m_mutex;
    std::condition_variable m_wake, m_idle;
    std::deque<Bucket> m_queue;
    bool m_busy = false, m_quit = false;
    std::exception_ptr m_error;
    double m_busy_seconds = 0.0;
    std::thread m_thread;
};

} // namespace crucible
