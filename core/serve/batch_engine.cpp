#include "core/serve/batch_engine.h"

#include "core/generate/generation_run.h"
#include "core/generate/text_stream.h"
#include "core/serve/serve_metrics.h"
#include "kernels/error.h"

#include <algorithm>
#include <deque>
#include <exception>
#include <optional>
#include <thread>

#include <omp.h>

namespace crucible::serve {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// A joining job takes the free slot whose cached tokens share the longest
// prefix with its prompt when that saves at least this many tokens of
// prefill; otherwise the lowest free slot, which keeps the batch's rows
// (0 .. highest busy slot) few.
constexpr size_t kWorthReusing = 16;

bool greedy_on_device(const SamplingConfig& c)
{
    return c.temperature == 0.0f && c.repetition_penalty == 1.0f && c.presence_penalty == 0.0f;
}

} // namespace

// ---- JobStream -------------------------------------------------------------------------------

JobStream::Update JobStream::next(std::chrono::milliseconds timeout)
{
    std::unique_lock lock(m_mutex);
    m_changed.wait_for(lock, timeout, [&] { return !m_text.empty() || (m_finished && !m_taken_finish); });
    Update u;
    u.text = std::move(m_text);
    m_text.clear();
    if (m_finished) {
        u.finished = true;
        u.stop_reason = m_reason;
        u.error = m_error;
        m_taken_finish = true;
    }
    return u;
}

void JobStream::cancel()
{
    m_cancelled.store(true, std::memory_order_relaxed);
    if (m_wake_engine) m_wake_engine();
}

int64_t JobStream::completion_tokens() const
{
    std::lock_guard lock(m_mutex);
    return m_generated;
}

void JobStream::push(const std::string& text, int64_t generated)
{
    {
        std::lock_guard lock(m_mutex);
        m_text += text;
        m_generated = generated;
    }
    if (!text.empty()) m_changed.notify_all();
}

void JobStream::finish(const std::string& text, const std::string& reason, const std::string& error)
{
    {
        std::lock_guard lock(m_mutex);
        m_text += text;
        m_finished = true;
        m_reason = reason;
        m_error = error;
    }
    m_changed.notify_all();
}

// ---- BatchEngine -------------------------------------------------------------------------------

// Wakes the model thread when a consumer cancels; streams may outlive the
// engine, which unhooks itself when it goes.
struct EngineBell {
    std::mutex mutex;
    std::condition_variable* wake = nullptr;
    void ring()
    {
        std::lock_guard lock(mutex);
        if (wake) wake->notify_all();
    }
};

struct BatchEngine::Impl {
    struct Waiting {
        ServeJob job;
        std::shared_ptr<JobStream> stream;
        Clock::time_point submitted;
    };
    // A busy slot: the job, its tokens so far and what of its prompt is
    // still to run.
    struct Slot {
        std::shared_ptr<JobStream> stream;   // null: free
        ServeJob job;
        Clock::time_point submitted;
        std::vector<int32_t> tokens;         // prompt, then every generated token
        std::vector<int32_t> pending;        // prompt tokens not yet in the cache
        int generated = 0;
        bool first_token = false;
        std::optional<Sampler> sampler;
        std::optional<TextStream> text;
        std::vector<float> logits;
    };

    ParamStore& params;
    const Tokenizer& tokenizer;
    int context;
    ServeMetrics* metrics;
    CachedModel model;
    std::vector<Slot> slots;

    mutable std::mutex mutex;   // guards `waiting`, `stopping` and the load figures below
    std::condition_variable wake;
    std::shared_ptr<EngineBell> bell = std::make_shared<EngineBell>();
    std::deque<Waiting> waiting;
    bool stopping = false;
    int running = 0;
    int64_t cache_tokens = 0;
    std::thread thread;

    Impl(ParamStore& p, const Tokenizer& t, int n_slots, int ctx, ServeMetrics* m)
        : params(p), tokenizer(t), context(ctx), metrics(m), model(p, n_slots, ctx), slots(size_t(n_slots))
    {
    }

    void run();
    bool admit();              // moves waiting jobs into free slots; false when stopping
    void step();               // one forward pass over the busy slots
    // Greedy steps a burst may run now: 0 unless every row decodes greedily
    // (no prompt pending, no free row in between) and nobody waits.
    int burst_steps();
    void burst(size_t rows, int steps);
    void take_token(size_t s, int32_t token);
    void end(size_t s, const std::string& reason, const std::string& error = {});
    void publish_load();
};

void BatchEngine::Impl::run()
{
    for (;;) {
        if (!admit()) break;
        try {
            step();
        } catch (const std::exception& e) {
            // A failing step (device error, out of memory) ends the jobs in
            // the batch, not the server.
            for (size_t s = 0; s < slots.size(); ++s)
                if (slots[s].stream) {
                    end(s, "error", e.what());
                    model.truncate(s, 0);
                }
        }
        publish_load();
    }
    for (size_t s = 0; s < slots.size(); ++s)
        if (slots[s].stream) end(s, "cancelled");
    std::lock_guard lock(mutex);
    for (auto& w : waiting) w.stream->finish("", "cancelled");
    waiting.clear();
}

bool BatchEngine::Impl::admit()
{
    std::unique_lock lock(mutex);
    const auto busy = [&] {
        return std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.stream != nullptr; });
    };
    wake.wait(lock, [&] { return stopping || !waiting.empty() || busy(); });
    if (stopping) return false;
    // Jobs whose consumer left while they waited never start.
    for (auto it = waiting.begin(); it != waiting.end();) {
        if (it->stream->cancelled()) {
            it->stream->finish("", "cancelled");
            if (metrics) metrics->job_finished("cancelled", seconds_since(it->submitted));
            it = waiting.erase(it);
        } else {
            ++it;
        }
    }
    while (!waiting.empty()) {
        const std::vector<int32_t>& prompt = waiting.front().job.prompt;
        size_t best = slots.size(), best_shared = 0, lowest = slots.size();
        for (size_t s = 0; s < slots.size(); ++s) {
            if (slots[s].stream) continue;
            if (lowest == slots.size()) lowest = s;
            const auto& held = model.cached[s];
            size_t shared = 0;
            while (shared < held.size() && shared < prompt.size() && held[shared] == prompt[shared]) ++shared;
            if (shared > best_shared) best = s, best_shared = shared;
        }
        if (lowest == slots.size()) break;   // every slot is busy: the rest wait
        const size_t s = best_shared >= kWorthReusing ? best : lowest;
        Waiting w = std::move(waiting.front());
        waiting.pop_front();

        Slot& slot = slots[s];
        // The last prompt token always runs: its logits give the first draw.
        size_t keep = 0;
        const auto& held = model.cached[s];
        while (keep < held.size() && keep < w.job.prompt.size() && held[keep] == w.job.prompt[keep]) ++keep;
        keep = std::min(keep, w.job.prompt.size() - 1);
        model.truncate(s, keep);
        slot.tokens = w.job.prompt;
        slot.pending.assign(w.job.prompt.begin() + std::ptrdiff_t(keep), w.job.prompt.end());
        slot.generated = 0;
        slot.first_token = false;
        slot.sampler.emplace(w.job.sampling);
        slot.text.emplace(w.job.stop_strings);
        slot.submitted = w.submitted;
        slot.stream = std::move(w.stream);
        slot.job = std::move(w.job);
        if (metrics) metrics->job_started(int64_t(slot.tokens.size()), int64_t(keep));
    }
    return true;
}

void BatchEngine::Impl::end(size_t s, const std::string& reason, const std::string& error)
{
    Slot& slot = slots[s];
    slot.stream->finish(slot.text ? slot.text->release(true) : std::string(), reason, error);
    if (metrics) metrics->job_finished(reason, seconds_since(slot.submitted));
    slot.stream.reset();
    slot.logits.clear();
    slot.logits.shrink_to_fit();
}

void BatchEngine::Impl::take_token(size_t s, int32_t token)
{
    Slot& slot = slots[s];
    const ServeJob& job = slot.job;
    if (!slot.first_token) {
        slot.first_token = true;
        if (metrics) metrics->first_token(seconds_since(slot.submitted));
    }
    if ((job.stop_at_eos && token == tokenizer.eos_id()) ||
        std::find(job.stop_tokens.begin(), job.stop_tokens.end(), token) != job.stop_tokens.end())
        return end(s, "eos");
    slot.tokens.push_back(token);
    ++slot.generated;
    std::string reason;
    // A model's vocabulary may be padded past its tokenizer's: such an id
    // has no text.
    static const std::string nothing;
    const std::string& bytes = token < tokenizer.vocab_size() ? tokenizer.token_bytes(token) : nothing;
    if (slot.text->append(bytes)) reason = "stop string";
    else if (slot.generated >= job.max_new_tokens) reason = "length";
    // The token just drawn sits at position tokens.size() - 1: with no
    // position left for it, nothing can follow.
    else if (int64_t(slot.tokens.size()) > context) reason = "context full";
    if (!reason.empty()) {
        slot.stream->push("", slot.generated);
        return end(s, reason);
    }
    slot.stream->push(slot.text->release(false), slot.generated);
}

void BatchEngine::Impl::step()
{
    // Jobs whose consumer is gone end here and free their slots.
    for (size_t s = 0; s < slots.size(); ++s)
        if (slots[s].stream && slots[s].stream->cancelled()) end(s, "cancelled");

    size_t rows = 0;
    for (size_t s = 0; s < slots.size(); ++s)
        if (slots[s].stream) rows = s + 1;
    if (rows == 0) return;
    if (const int steps = burst_steps(); steps >= 2) return burst(rows, steps);

    // Each busy slot's input this step: the next piece of its prompt, or the
    // token it drew last. `draws` lists the slots that draw after it.
    std::vector<std::vector<int32_t>> input(rows);
    std::vector<size_t> draws;
    bool device_picks = true;
    for (size_t s = 0; s < rows; ++s) {
        Slot& slot = slots[s];
        if (!slot.stream) continue;
        if (!slot.pending.empty()) {
            const size_t n = std::min(slot.pending.size(), size_t(kPrefillChunk));
            input[s].assign(slot.pending.begin(), slot.pending.begin() + std::ptrdiff_t(n));
            slot.pending.erase(slot.pending.begin(), slot.pending.begin() + std::ptrdiff_t(n));
            if (!slot.pending.empty()) continue;
        } else {
            input[s].push_back(slot.tokens.back());
        }
        draws.push_back(s);
        device_picks = device_picks && greedy_on_device(slot.job.sampling);
    }

    const auto t0 = Clock::now();
    int64_t produced = 0;
    if (device_picks) {
        // Greedy everywhere: the device picks, and only ids cross to the host.
        std::vector<std::vector<int32_t>> ids;
        std::vector<std::vector<float>> probs;
        model.append_greedy(input, CachedModel::Logits::last, ids, probs);
        for (const size_t s : draws) {
            take_token(s, ids[s][0]);
            ++produced;
        }
    } else {
        std::vector<std::vector<float>> logits;
        model.append(input, CachedModel::Logits::last, logits);
        for (const size_t s : draws) slots[s].logits = std::move(logits[s]);
        // Each slot draws from its own generator, so the draws may run in
        // parallel (a draw over a large vocabulary is tens of microseconds).
        std::vector<int32_t> drawn(draws.size());
        std::vector<std::exception_ptr> failed(draws.size());
        const int threads = int(std::min<size_t>(draws.size(), size_t(omp_get_max_threads())));
#pragma omp parallel for schedule(static, 1) num_threads(threads) if (threads > 1)
        for (int64_t i = 0; i < int64_t(draws.size()); ++i) {
            Slot& slot = slots[draws[size_t(i)]];
            try {   // nothing may leave a parallel region but by its end
                drawn[size_t(i)] = slot.sampler->sample(slot.logits, slot.tokens);
            } catch (...) {
                failed[size_t(i)] = std::current_exception();
            }
        }
        for (size_t i = 0; i < draws.size(); ++i) {
            if (failed[i]) {
                try {
                    std::rethrow_exception(failed[i]);
                } catch (const std::exception& e) {
                    end(draws[i], "error", e.what());
                }
                continue;
            }
            take_token(draws[i], drawn[i]);
            ++produced;
        }
    }
    if (metrics) metrics->step(int(rows), produced, seconds_since(t0));
}

int BatchEngine::Impl::burst_steps()
{
    if (model.forward->decode_burst() < 2) return 0;
    {
        std::lock_guard lock(mutex);
        if (!waiting.empty()) return 0;   // a newcomer joins at the next step, not after a burst
    }
    int steps = int(model.forward->decode_burst());
    size_t rows = 0;
    for (size_t s = 0; s < slots.size(); ++s) {
        const Slot& slot = slots[s];
        if (!slot.stream) continue;
        rows = s + 1;
        if (!slot.pending.empty() || !greedy_on_device(slot.job.sampling)) return 0;
        steps = std::min(steps, slot.job.max_new_tokens - slot.generated);
        // The cache holds every token but the last; each step adds one.
        steps = std::min(steps, context - int(model.cached[s].size()));
    }
    // A free row between busy ones rides along (burst() makes room), which
    // needs a cache to continue.
    for (size_t s = 0; s < rows; ++s)
        if (!slots[s].stream && model.cached[s].empty()) return 0;
    return steps < context ? steps : 0;
}

void BatchEngine::Impl::burst(size_t rows, int steps)
{
    const auto t0 = Clock::now();
    std::vector<int32_t> last(rows), ids;
    std::vector<float> probs;
    for (size_t s = 0; s < rows; ++s) {
        if (slots[s].stream) {
            last[s] = slots[s].tokens.back();
            continue;
        }
        // A free row runs its last cached token again; what it draws is
        // dropped, and `cached` keeps saying what its cache holds, so the
        // prefix a later job may reuse stays intact.
        if (int(model.cached[s].size()) + steps > context) model.truncate(s, size_t(context - steps));
        last[s] = model.cached[s].back();
    }
    model.decode_greedy(last, steps, ids, probs);
    int64_t produced = 0;
    for (size_t k = 0; k < size_t(steps); ++k)
        for (size_t s = 0; s < rows; ++s)
            if (slots[s].stream) {
                take_token(s, ids[k * rows + s]);
                ++produced;
            }
    if (metrics) metrics->step(int(rows), produced, seconds_since(t0));
}

void BatchEngine::Impl::publish_load()
{
    int busy = 0;
    int64_t held = 0;
    for (size_t s = 0; s < slots.size(); ++s)
        if (slots[s].stream) {
            ++busy;
            held += int64_t(model.cached[s].size());
        }
    std::lock_guard lock(mutex);
    running = busy;
    cache_tokens = held;
}

BatchEngine::BatchEngine(ParamStore& params, const Tokenizer& tokenizer, int slots, int context, ServeMetrics* metrics,
                         const CachedForward::Speedups& speedups)
{
    if (slots < 1) throw Error("the server needs at least one batch slot");
    if (context < 2 || context > params.config().seq_len)
        throw Error("the context must be between 2 and the model's " + std::to_string(params.config().seq_len) +
                    " tokens, got " + std::to_string(context));
    if (tokenizer.vocab_size() > params.config().vocab_size)
        throw Error("the tokenizer has " + std::to_string(tokenizer.vocab_size()) + " tokens but the model only " +
                    std::to_string(params.config().vocab_size) + ": they do not belong together");
    m_impl = std::make_unique<Impl>(params, tokenizer, slots, context, metrics);
    m_impl->bell->wake = &m_impl->wake;
    m_impl->model.forward->set_speedups(speedups);
    m_impl->thread = std::thread([this] { m_impl->run(); });
}

BatchEngine::~BatchEngine() { stop(); }

void BatchEngine::stop()
{
    {
        std::lock_guard lock(m_impl->mutex);
        m_impl->stopping = true;
    }
    m_impl->wake.notify_all();
    if (m_impl->thread.joinable()) m_impl->thread.join();
    std::lock_guard lock(m_impl->bell->mutex);
    m_impl->bell->wake = nullptr;
}

std::shared_ptr<JobStream> BatchEngine::submit(ServeJob job)
{
    Impl& I = *m_impl;
    if (job.prompt.empty()) throw Error("the prompt is empty: give at least one token");
    if (int64_t(job.prompt.size()) >= I.context)
        throw Error("the prompt has " + std::to_string(job.prompt.size()) + " tokens, which fills the context of " +
                    std::to_string(I.context) + "; shorten it");
    for (const int32_t id : job.prompt)
        if (id < 0 || id >= I.params.config().vocab_size)
            throw Error("the prompt holds the token id " + std::to_string(id) + ", outside the vocabulary of " +
                        std::to_string(I.params.config().vocab_size));
    if (job.max_new_tokens < 1) throw Error("a job must generate at least one token");
    if (const auto p = job.sampling.problems(); !p.empty()) throw Error("invalid sampling settings: " + p.front());

    auto stream = std::make_shared<JobStream>();
    stream->m_prompt_tokens = int64_t(job.prompt.size());
    stream->m_wake_engine = [bell = I.bell] { bell->ring(); };
    {
        std::lock_guard lock(I.mutex);
        if (I.stopping) throw Error("the server is shutting down");
        I.waiting.push_back({std::move(job), stream, Clock::now()});
    }
    I.wake.notify_all();
    return stream;
}

BatchEngine::Load BatchEngine::load() const
{
    std::lock_guard lock(m_impl->mutex);
    Load l;
    l.slot_count = int(m_impl->slots.size());
    l.running = m_impl->running;
    l.waiting = int(m_impl->waiting.size());
    l.cache_tokens = m_impl->cache_tokens;
    l.cache_capacity = int64_t(m_impl->slots.size()) * m_impl->context;
    l.cache_bytes = m_impl->model.bytes();
    return l;
}

int BatchEngine::slot_count() const { return int(m_impl->slots.size()); }
int BatchEngine::context() const { return m_impl->context; }

} // namespace crucible::serve
