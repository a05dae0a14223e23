// BatchEngine: continuous batching of independent generation jobs over one
// KV cache.
//
// The cache has `slots` sequence slots. A job submitted while a slot is free
// joins the running batch at the next step; one that finds none waits in a
// queue until a job ends. Every step is one forward pass over all busy slots
// together: sequences that are decoding contribute their last token, a job
// that has just joined contributes the next piece of its prompt (at most
// kPrefillChunk tokens per step, so a long prompt never stalls the others'
// streams for long), and each slot whose prompt is complete draws its next
// token from its own sampler. A job ends at its token limit, EOS, one of its
// stop tokens or strings, a full context, or when its consumer cancels it
// (a client that went away); its slot is free for the next step.
//
// When every sequence of the batch decodes greedily and no job waits, the
// device runs several steps per submission (CachedForward::decode_greedy,
// 8 on a GPU), as `generate` does; a job that ends inside such a burst
// drops the tokens it drew past its end.
//
// A slot keeps the tokens it last held, so a job whose prompt begins with
// them (a conversation's next turn) reuses their keys and values and runs
// only the rest.
//
// One thread runs the model; submit() and the streams are safe to use from
// any thread.
#pragma once

#include "core/data/tokenizer.h"
#include "core/generate/cached_forward.h"
#include "core/generate/sampler.h"
#include "core/model/param_store.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace crucible::serve {

class ServeMetrics;

struct ServeJob {
    std::vector<int32_t> prompt;
    int max_new_tokens = 16;
    SamplingConfig sampling;
    std::vector<std::string> stop_strings;   // the reply ends before the first one
    std::vector<int32_t> stop_tokens;        // tokens that end the reply as EOS does (not shown)
    bool stop_at_eos = true;
};

// What one job has produced, handed from the engine to its one consumer.
class JobStream {
public:
    struct Update {
        std::string text;          // new text since the last update (may be empty)
        bool finished = false;
        std::string stop_reason;   // when finished: "eos", "stop string", "length", "context full",
                                   // "cancelled" or "error"
        std::string error;         // when stop_reason is "error"
    };
    // Waits up to `timeout` for new text or the end, and takes it.
    Update next(std::chrono::milliseconds timeout);
    // The consumer is gone: the engine ends the job and frees its slot at its
    // next step (or drops it from the queue).
    void cancel();
    bool cancelled() const { return m_cancelled.load(std::memory_order_relaxed); }

    int64_t prompt_tokens() const { return m_prompt_tokens; }
    int64_t completion_tokens() const;   // generated so far (stop tokens excluded)

private:
    friend class BatchEngine;
    void push(const std::string& text, int64_t generated);
    void finish(const std::string& text, const std::string& reason, const std::string& error = {});

    mutable std::mutex m_mutex;
    std::condition_variable m_changed;
    std::string m_text;
    bool m_finished = false, m_taken_finish = false;
    std::string m_reason, m_error;
    int64_t m_prompt_tokens = 0, m_generated = 0;
    std::atomic<bool> m_cancelled{false};
    std::function<void()> m_wake_engine;   // set once before the stream is shared
};

class BatchEngine {
public:
    // Rows of a prompt one step runs for a job that is joining.
    static constexpr int kPrefillChunk = 256;

    // `context`: the tokens one slot holds (prompt + reply), at most the
    // model's seq_len. `metrics` (optional) records tokens, latencies and
    // cache reuse.
    // `speedups`: how decode steps run (graphs, fused kernels, burst length).
    BatchEngine(ParamStore& params, const Tokenizer& tokenizer, int slots, int context, ServeMetrics* metrics = nullptr,
                const CachedForward::Speedups& speedups = {});
    ~BatchEngine();   // stop()
    // Ends every job ("cancelled") and stops the model thread; later submits throw.
    void stop();
    BatchEngine(const BatchEngine&) = delete;
    BatchEngine& operator=(const BatchEngine&) = delete;

    // Queues a job. Throws Error for one that cannot run: an empty prompt, a
    // prompt that fills the context, a token outside the vocabulary, bad
    // sampling settings.
    std::shared_ptr<JobStream> submit(ServeJob job);

    struct Load {
        int slot_count = 0, running = 0, waiting = 0;
        int64_t cache_tokens = 0;      // positions the running jobs hold
        int64_t cache_capacity = 0;    // slots × context
        size_t cache_bytes = 0;        // device memory of the cache and buffers
    };
    Load load() const;
    int slot_count() const;
    int context() const;

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace crucible::serve
