// Generator: prefill, the plain decode loop and the per-token bookkeeping
// (EOS, stop strings, token limit, context full, cancellation, events).
//
// The loop keeps every sequence of a batch in its cache slot for the whole
// call; a sequence that has stopped sits out of later chunks (padding rows),
// so the others keep their positions and the batch never reshuffles. Each
// sequence draws from its own Sampler seeded seed + index: sequence 0 of a
// batch reproduces the same request run alone.
#include "core/generate/generator.h"

#include "core/generate/generation_run.h"
#include "kernels/error.h"

#include <algorithm>
#include <cmath>
#include <exception>

#include <omp.h>

namespace crucible {

namespace {

// Rows per sequence in one prefill chunk: long prompts run in pieces, so the
// activation buffers stay max_batch × this, whatever the context.
constexpr int64_t kPrefillChunk = 256;
// Every speculative verification chunk is then short enough to be replayed.
static_assert(Generator::kMaxLookahead + 1 <= CachedForward::kGraphSeq);

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

} // namespace

// ---- CachedModel ---------------------------------------------------------------------------

CachedModel::CachedModel(ParamStore& p, int max_batch, int max_seq) : params(&p)
{
    const int64_t chunk = std::max<int64_t>(std::min<int64_t>(max_seq, kPrefillChunk), Generator::kMaxLookahead + 1);
    cache = std::make_unique<KvCache>(p.backend(), p.config(), max_batch, max_seq);
    forward = std::make_unique<CachedForward>(p, *cache, int64_t(max_batch) * chunk,
                                              int64_t(max_batch) * (Generator::kMaxLookahead + 1));
    cached.assign(size_t(max_batch), {});
}

namespace {

// Appends tokens[b] to sequence b of `model` in chunks that fit its buffers:
// run(chunk_tokens, counts, seq, rows) computes one chunk and wants outputs
// for `rows`; take(b, r) then collects output r, which belongs to sequence b.
template <class Run, class Take>
void append_in_chunks(CachedModel& model, const std::vector<std::vector<int32_t>>& tokens, CachedModel::Logits wanted,
                      Run run, Take take)
{
    const size_t batch = tokens.size();
    size_t longest = 0;
    for (const auto& t : tokens) longest = std::max(longest, t.size());
    const int64_t per_chunk = std::max<int64_t>(1, model.forward->max_tokens() / int64_t(batch));

    std::vector<int32_t> chunk_tokens;
    std::vector<int64_t> counts(batch), rows;
    for (size_t start = 0; start < longest; start += size_t(per_chunk)) {
        const int64_t seq = std::min<int64_t>(per_chunk, int64_t(longest - start));
        chunk_tokens.assign(batch * size_t(seq), 0);
        rows.clear();
        for (size_t b = 0; b < batch; ++b) {
            const size_t size = tokens[b].size();
            const int64_t count = start < size ? std::min<int64_t>(seq, int64_t(size - start)) : 0;
            counts[b] = count;
            for (int64_t t = 0; t < count; ++t) chunk_tokens[b * size_t(seq) + size_t(t)] = tokens[b][start + size_t(t)];
            for (int64_t t = 0; t < count; ++t) {
                const bool last = start + size_t(t) + 1 == size;
                if (wanted == CachedModel::Logits::every || (wanted == CachedModel::Logits::last && last))
                    rows.push_back(int64_t(b) * seq + t);
            }
        }
        run(chunk_tokens, counts, seq, rows);
        size_t r = 0;
        for (size_t b = 0; b < batch; ++b) {
            for (int64_t t = 0; t < counts[b]; ++t) {
                model.cached[b].push_back(tokens[b][start + size_t(t)]);
                if (r < rows.size() && rows[r] == int64_t(b) * seq + t) take(b, r++);
            }
        }
    }
}

} // namespace

void CachedModel::append(const std::vector<std::vector<int32_t>>& tokens, Logits wanted,
                         std::vector<std::vector<float>>& logits, std::vector<std::vector<float>>* top_probs)
{
    const size_t vocab = size_t(params->config().vocab_size);
    logits.assign(tokens.size(), {});
    if (top_probs) top_probs->assign(tokens.size(), {});
    // On the CPU the host is the device: the normaliser would cost what the
    // caller's own pass costs, so it is not asked for.
    const bool tops = top_probs && params->backend().device() != DeviceKind::cpu;
    std::vector<float> chunk_logits, chunk_tops;
    append_in_chunks(
        *this, tokens, wanted,
        [&](const std::vector<int32_t>& chunk, const std::vector<int64_t>& counts, int64_t seq,
            const std::vector<int64_t>& rows) {
            if (tops) forward->append(chunk, counts, seq, rows, chunk_logits, chunk_tops);
            else forward->append(chunk, counts, seq, rows, chunk_logits);
        },
        [&](size_t b, size_t r) {
            logits[b].insert(logits[b].end(), chunk_logits.begin() + std::ptrdiff_t(r * vocab),
                             chunk_logits.begin() + std::ptrdiff_t((r + 1) * vocab));
            if (tops) (*top_probs)[b].push_back(chunk_tops[r]);
        });
}

void CachedModel::append_greedy(const std::vector<std::vector<int32_t>>& tokens, Logits wanted,
                                std::vector<std::vector<int32_t>>& ids, std::vector<std::vector<float>>& probs)
{
    ids.assign(tokens.size(), {});
    probs.assign(tokens.size(), {});
    std::vector<int32_t> picked;
    std::vector<float> picked_probs;
    append_in_chunks(
        *this, tokens, wanted,
        [&](const std::vector<int32_t>& chunk, const std::vector<int64_t>& counts, int64_t seq,
            const std::vector<int64_t>& rows) { forward->append_greedy(chunk, counts, seq, rows, picked, picked_probs); },
        [&](size_t b, size_t r) {
            ids[b].push_back(picked[r]);
            probs[b].push_back(picked_probs[r]);
        });
}

void CachedModel::decode_greedy(const std::vector<int32_t>& last, int steps, std::vector<int32_t>& ids,
                                std::vector<float>& probs)
{
    forward->decode_greedy(last, steps, ids, probs);
    // The cache took each sequence's input and every pick but the last.
    const size_t batch = last.size();
    for (size_t b = 0; b < batch; ++b) {
        cached[b].push_back(last[b]);
        for (int s = 0; s + 1 < steps; ++s) cached[b].push_back(ids[size_t(s) * batch + b]);
    }
}

void CachedModel::truncate(size_t b, size_t length)
{
    length = std::min(length, cached[b].size());
    cached[b].resize(length);
    cache->set_length(int64_t(b), int64_t(length));
}

std::vector<std::vector<int32_t>> CachedModel::plan_prefill(const std::vector<std::vector<int32_t>>& prompts,
                                                            bool reuse, bool need_logits)
{
    std::vector<std::vector<int32_t>> rest(prompts.size());
    for (size_t b = 0; b < prompts.size(); ++b) {
        const auto& prompt = prompts[b];
        size_t keep = 0;
        if (reuse) {
            const auto& held = cached[b];
            while (keep < held.size() && keep < prompt.size() && held[keep] == prompt[keep]) ++keep;
        }
        if (need_logits) keep = std::min(keep, prompt.size() - 1);   // the last token must run for its logits
        truncate(b, keep);
        rest[b].assign(prompt.begin() + std::ptrdiff_t(keep), prompt.end());
    }
    return rest;
}

// ---- GenerationRun ---------------------------------------------------------------------------

GenerationRun::GenerationRun(const GenerationRequest& request, const std::function<bool(const TokenEvent&)>& on_token,
                             const Tokenizer* tokenizer, const std::atomic<bool>& cancel, int max_seq)
    : m_request(request), m_on_token(on_token), m_tokenizer(tokenizer), m_cancel(cancel), m_max_seq(max_seq)
{
    for (size_t b = 0; b < request.prompts.size(); ++b) {
        SamplingConfig sampling = request.sampling;
        sampling.seed += b;
        m_seqs.emplace_back(request.prompts[b], sampling, request.stop_strings, request.stop_at_speaker_line);
    }
    m_stats.stop_reasons.assign(m_seqs.size(), "");
}

bool GenerationRun::all_done() const
{
    return std::all_of(m_seqs.begin(), m_seqs.end(), [](const SequenceState& s) { return s.done; });
}

void GenerationRun::finish(size_t b, const std::string& reason)
{
    SequenceState& s = m_seqs[b];
    if (s.done) return;
    s.done = true;
    s.reason = reason;
    m_stats.stop_reason = reason;
}

void GenerationRun::finish_all(const std::string& reason)
{
    for (size_t b = 0; b < m_seqs.size(); ++b) finish(b, reason);
}

bool GenerationRun::check_cancel()
{
    if (!m_cancel.load(std::memory_order_relaxed)) return false;
    finish_all("cancelled");
    return true;
}

bool GenerationRun::take_token(size_t b, int32_t token, std::span<const float> raw_logits)
{
    return take_token(b, token, token_probability(raw_logits, token), raw_logits);
}

bool GenerationRun::take_token(size_t b, int32_t token, float probability, std::span<const float> raw_logits)
{
    SequenceState& s = m_seqs[b];
    if (s.done) return false;
    if ((m_request.stop_at_eos && m_tokenizer && token == m_tokenizer->eos_id()) ||
        std::find(m_request.stop_tokens.begin(), m_request.stop_tokens.end(), token) != m_request.stop_tokens.end()) {
        finish(b, "eos");
        return false;
    }
    s.tokens.push_back(token);
    s.generated.push_back(token);
    ++m_stats.generated_tokens;

    TokenEvent e;
    e.sequence = int(b);
    e.token = token;
    if (m_tokenizer) {
        e.bytes = m_tokenizer->token_bytes(token);
        if (s.text.append(e.bytes)) finish(b, "stop string");
    }
    if (int(s.generated.size()) >= m_request.max_new_tokens) finish(b, "length");
    // The token just drawn sits at position tokens.size() - 1: with no
    // position left for it, nothing can follow.
    if (int64_t(s.tokens.size()) > m_max_seq) finish(b, "context full");
    e.text = s.text.release(s.done);
    e.probability = probability;
    if (m_request.top_alternatives > 0 && !raw_logits.empty()) e.alternatives = top_probabilities(raw_logits, m_request.top_alternatives);
    if (m_on_token && !m_on_token(e)) finish_all("cancelled");
    return !s.done;
}

void GenerationRun::sample_step()
{
    // Every running sequence draws first, in parallel when there are several:
    // a draw over a 32K vocabulary is tens of microseconds, and each sequence
    // has its own generator, so the draws do not depend on the threads. Then
    // the tokens are taken in order, as the consumer expects them.
    const int64_t batch = int64_t(m_seqs.size());
    std::vector<int32_t> drawn(size_t(batch), 0);
    std::vector<float> probability(size_t(batch), 0.0f);
    std::vector<std::exception_ptr> failed(static_cast<size_t>(batch));
    const auto running = std::count_if(m_seqs.begin(), m_seqs.end(), [](const SequenceState& s) { return !s.done; });
    const int threads = int(std::min<int64_t>(running, omp_get_max_threads()));
#pragma omp parallel for schedule(static, 1) num_threads(threads) if (threads > 1)
    for (int64_t b = 0; b < batch; ++b) {
        SequenceState& s = m_seqs[size_t(b)];
        if (s.done) continue;
        try {   // nothing may leave a parallel region but by its end
            std::vector<float> work = s.logits;
            const int32_t token = s.sampler.sample(work, s.tokens);
            drawn[size_t(b)] = token;
            probability[size_t(b)] = std::isnan(s.top_probability)
                                         ? token_probability(s.logits, token)
                                         : token_probability(s.logits, token, s.top_probability);
        } catch (...) {
            failed[size_t(b)] = std::current_exception();
        }
    }
    for (const auto& e : failed)
        if (e) std::rethrow_exception(e);
    for (size_t b = 0; b < m_seqs.size(); ++b) {
        if (check_cancel()) return;
        if (!m_seqs[b].done) take_token(b, drawn[b], probability[b], m_seqs[b].logits);
    }
}

bool GenerationRun::picks_on_device() const
{
    const SamplingConfig& c = m_request.sampling;
    return c.temperature == 0.0f && c.repetition_penalty == 1.0f && c.presence_penalty == 0.0f &&
           m_request.top_alternatives == 0;
}

int GenerationRun::burst_length(const CachedModel& model, int wanted) const
{
    int steps = std::min<int>(wanted, int(model.forward->decode_burst()));
    for (size_t b = 0; b < m_seqs.size(); ++b) {
        const SequenceState& s = m_seqs[b];
        // The cache holds every token but the last; each step adds one.
        steps = std::min(steps, m_max_seq - int(model.cached[b].size()));
        if (!s.done) steps = std::min(steps, m_request.max_new_tokens - int(s.generated.size()));
    }
    return steps;
}

void GenerationRun::greedy_burst(CachedModel& target, int steps)
{
    const size_t batch = m_seqs.size();
    std::vector<int32_t> last(batch), ids;
    std::vector<float> probs;
    for (size_t b = 0; b < batch; ++b) last[b] = m_seqs[b].tokens.back();
    const auto t0 = Clock::now();
    target.decode_greedy(last, steps, ids, probs);
    m_stats.decode_model_seconds += seconds_since(t0);
    for (size_t s = 0; s < size_t(steps); ++s)
        for (size_t b = 0; b < batch; ++b) {
            if (check_cancel()) return;
            if (!m_seqs[b].done) take_token(b, ids[s * batch + b], probs[s * batch + b], {});
        }
}

void GenerationRun::plain_step(CachedModel& target)
{
    if (picks_on_device()) {
        const int steps = burst_length(target, int(CachedForward::kMaxDecodeBurst));
        if (steps >= 2) return greedy_burst(target, steps);
    }
    std::vector<std::vector<int32_t>> next(m_seqs.size());
    for (size_t b = 0; b < m_seqs.size(); ++b)
        if (!m_seqs[b].done) next[b].push_back(m_seqs[b].tokens.back());
    const auto t0 = Clock::now();
    if (picks_on_device()) {
        std::vector<std::vector<int32_t>> ids;
        std::vector<std::vector<float>> probs;
        target.append_greedy(next, CachedModel::Logits::last, ids, probs);
        m_stats.decode_model_seconds += seconds_since(t0);
        for (size_t b = 0; b < m_seqs.size(); ++b) {
            if (check_cancel()) return;
            if (!m_seqs[b].done) take_token(b, ids[b][0], probs[b][0], {});
        }
        return;
    }
    std::vector<std::vector<float>> logits, tops;
    target.append(next, CachedModel::Logits::last, logits, &tops);
    m_stats.decode_model_seconds += seconds_since(t0);
    for (size_t b = 0; b < m_seqs.size(); ++b)
        if (!m_seqs[b].done) m_seqs[b].take_logits(std::move(logits[b]), tops[b]);
    sample_step();
}

GenerationStats GenerationRun::finish_stats()
{
    for (size_t b = 0; b < m_seqs.size(); ++b) {
        m_stats.stop_reasons[b] = m_seqs[b].reason;
        m_stats.tokens.push_back(m_seqs[b].generated);
        m_stats.texts.push_back(m_seqs[b].text.text());
    }
    return m_stats;
}

// ---- Generator ----------------------------------------------------------------------------------

struct Generator::Impl {
    const Tokenizer* tokenizer = nullptr;
    int max_batch = 1, max_seq = 1;
    std::unique_ptr<CachedModel> target, draft;
    int lookahead = 4;
    CachedForward::Speedups speedups;
    std::atomic<bool> cancel{false};
};

Generator::Generator(ParamStore& params, const Tokenizer& tokenizer, int max_batch, int max_seq)
    : Generator(params, max_batch, max_seq)
{
    if (tokenizer.vocab_size() > params.config().vocab_size)
        throw Error("the tokenizer has " + std::to_string(tokenizer.vocab_size()) +
                    " tokens but the model only " + std::to_string(params.config().vocab_size) +
                    ": they do not belong together");
    m_impl->tokenizer = &tokenizer;
}

Generator::Generator(ParamStore& params, int max_batch, int max_seq) : m_impl(std::make_unique<Impl>())
{
    if (max_batch < 1) throw Error("generation needs a batch of at least one sequence");
    if (max_seq < 2 || max_seq > params.config().seq_len)
        throw Error("the generation context must be between 2 and the model's " +
                    std::to_string(params.config().seq_len) + " tokens, got " + std::to_string(max_seq));
    m_impl->max_batch = max_batch;
    m_impl->max_seq = max_seq;
    m_impl->target = std::make_unique<CachedModel>(params, max_batch, max_seq);
}

Generator::~Generator() = default;

int Generator::max_batch() const { return m_impl->max_batch; }
int Generator::max_seq() const { return m_impl->max_seq; }

size_t Generator::bytes() const
{
    return m_impl->target->bytes() + (m_impl->draft ? m_impl->draft->bytes() : 0);
}

void Generator::set_draft(ParamStore* draft, int lookahead)
{
    if (!draft) {
        m_impl->draft.reset();
        return;
    }
    const ModelConfig& target = m_impl->target->params->config();
    if (draft->config().vocab_size != target.vocab_size)
        throw Error("the draft model's vocabulary (" + std::to_string(draft->config().vocab_size) +
                    " tokens) differs from the target's (" + std::to_string(target.vocab_size) +
                    "): speculative decoding needs both to share one tokenizer");
    if (lookahead < 1 || lookahead > kMaxLookahead)
        throw Error("the speculative lookahead must be between 1 and " + std::to_string(kMaxLookahead));
    if (draft->config().seq_len < m_impl->max_seq)
        throw Error("the draft model's context (" + std::to_string(draft->config().seq_len) +
                    " tokens) is shorter than the generation context (" + std::to_string(m_impl->max_seq) + ")");
    m_impl->draft = std::make_unique<CachedModel>(*draft, m_impl->max_batch, m_impl->max_seq);
    m_impl->draft->forward->set_speedups(m_impl->speedups);
    m_impl->lookahead = lookahead;
}

void Generator::set_speedups(const CachedForward::Speedups& s)
{
    m_impl->speedups = s;
    m_impl->target->forward->set_speedups(s);
    if (m_impl->draft) m_impl->draft->forward->set_speedups(s);
}

void Generator::request_cancel() { m_impl->cancel.store(true, std::memory_order_relaxed); }

GenerationStats Generator::generate(const GenerationRequest& request,
                                    const std::function<bool(const TokenEvent&)>& on_token)
{
    Impl& I = *m_impl;
    I.cancel.store(false, std::memory_order_relaxed);
    const size_t batch = request.prompts.size();
    if (batch == 0) throw Error("generation needs at least one prompt");
    if (batch > size_t(I.max_batch))
        throw Error(std::to_string(batch) + " prompts exceed this generator's batch of " +
                    std::to_string(I.max_batch));
    for (size_t b = 0; b < batch; ++b) {
        const size_t n = request.prompts[b].size();
        if (n == 0) throw Error("prompt " + std::to_string(b + 1) + " is empty: give at least one token");
        if (n > size_t(I.max_seq))
            throw Error("prompt " + std::to_string(b + 1) + " has " + std::to_string(n) +
                        " tokens, more than the context of " + std::to_string(I.max_seq) + "; shorten it");
    }
    if (request.max_new_tokens < 0) throw Error("the token limit must not be negative");
    if (request.top_alternatives < 0) throw Error("the number of alternatives must not be negative");
    if (!I.tokenizer) {
        for (const auto& s : request.stop_strings)
            if (!s.empty()) throw Error("stop strings need a tokenizer to decode the generated tokens");
        if (request.stop_at_speaker_line) throw Error("stopping at a speaker line needs a tokenizer to decode the tokens");
    }

    GenerationRun run(request, on_token, I.tokenizer, I.cancel, I.max_seq);
    auto& seqs = run.sequences();
    GenerationStats& stats = run.stats();

    // Prefill: the prompts run through the target (and the draft, which needs
    // no logits: its first proposal starts from the first generated token).
    const auto t0 = Clock::now();
    std::vector<std::vector<float>> logits;
    const auto target_rest = I.target->plan_prefill(request.prompts, request.reuse_cache, true);
    for (const auto& r : target_rest) stats.prompt_tokens += int64_t(r.size());
    std::vector<std::vector<float>> tops;
    I.target->append(target_rest, CachedModel::Logits::last, logits, &tops);
    for (size_t b = 0; b < batch; ++b) seqs[b].take_logits(std::move(logits[b]), tops[b]);
    if (I.draft) {
        const auto draft_rest = I.draft->plan_prefill(request.prompts, request.reuse_cache, false);
        I.draft->append(draft_rest, CachedModel::Logits::none, logits);
    }
    I.target->params->backend().synchronize();
    stats.prefill_seconds = seconds_since(t0);

    const auto t1 = Clock::now();
    if (request.max_new_tokens == 0) run.finish_all("length");
    // The first token comes from the prefill's logits; every later step (or
    // speculative round) starts by running the last token drawn.
    run.sample_step();
    while (!run.all_done() && !run.check_cancel()) {
        if (I.draft) run.speculative_round(*I.target, *I.draft, I.lookahead);
        else run.plain_step(*I.target);
    }
    stats.decode_seconds = seconds_since(t1);
    return run.finish_stats();
}

} // namespace crucible
