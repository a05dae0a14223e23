// Internals of Generator (not part of its API): a model paired with its KV
// cache, and the state of one generate() call. generator.cpp holds the
// prefill, the plain decode loop and the bookkeeping every token goes
// through; speculative.cpp holds the draft-and-verify round.
#pragma once

#include "core/generate/cached_forward.h"
#include "core/generate/generator.h"
#include "core/generate/text_stream.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace crucible {

// A model with its own KV cache, and what that cache holds per sequence, so
// a later request can keep a shared prefix and speculative decoding can roll
// rejected tokens back.
struct CachedModel {
    ParamStore* params = nullptr;
    std::unique_ptr<KvCache> cache;
    std::unique_ptr<CachedForward> forward;
    std::vector<std::vector<int32_t>> cached;   // per sequence slot: the tokens the cache holds

    CachedModel(ParamStore& params, int max_batch, int max_seq);

    enum class Logits { none, last, every };
    // Appends tokens[b] to sequence b (empty: it sits out), in chunks that fit
    // the buffers. logits[b] receives [rows, vocab]: the logits after the last
    // appended token (Logits::last) or after each one (Logits::every).
    // On a GPU, top_probs (when given) also receives, per logits row, the
    // probability of its most likely token, computed on the device (see
    // CachedForward::append); on the CPU its rows stay empty.
    void append(const std::vector<std::vector<int32_t>>& tokens, Logits wanted,
                std::vector<std::vector<float>>& logits, std::vector<std::vector<float>>* top_probs = nullptr);
    // The same for greedy decoding: instead of logits, ids[b] / probs[b]
    // receive the most likely next token and its probability after the same
    // rows, picked on the device (no logits cross to the host).
    void append_greedy(const std::vector<std::vector<int32_t>>& tokens, Logits wanted,
                       std::vector<std::vector<int32_t>>& ids, std::vector<std::vector<float>>& probs);
    // Greedy decode burst (CachedForward::decode_greedy): sequence b runs
    // last[b] and then its own picks, `steps` tokens in all; ids / probs
    // receive the steps × batch picks, step-major.
    void decode_greedy(const std::vector<int32_t>& last, int steps, std::vector<int32_t>& ids,
                       std::vector<float>& probs);
    // Keeps the first `length` tokens of sequence b.
    void truncate(size_t b, size_t length);
    // Makes the cache of each sequence hold prompts[b] except, when logits
    // are needed, its last token, which is returned as what still has to run;
    // with `reuse` a prefix already cached is kept. Returns the tokens to run.
    std::vector<std::vector<int32_t>> plan_prefill(const std::vector<std::vector<int32_t>>& prompts, bool reuse,
                                                   bool need_logits);
    size_t bytes() const { return cache->bytes() + forward->bytes(); }
};

struct SequenceState {
    std::vector<int32_t> tokens;       // prompt, then every generated token (EOS excluded)
    std::vector<int32_t> generated;
    std::vector<float> logits;         // target's next-token logits, when a plain step has them
    float top_probability = NAN;       // of the most likely token under `logits`, when the device gave it
    Sampler sampler;
    TextStream text;
    bool done = false;
    std::string reason;

    SequenceState(std::vector<int32_t> prompt, const SamplingConfig& sampling, std::vector<std::string> stops,
                  bool speaker_lines)
        : tokens(std::move(prompt)), sampler(sampling), text(std::move(stops), speaker_lines)
    {
    }
    // The next-token logits of a step, with the device's probability of the
    // most likely token when it came along (`top` then holds one value).
    void take_logits(std::vector<float> row, const std::vector<float>& top)
    {
        logits = std::move(row);
        top_probability = top.empty() ? NAN : top[0];
    }
};

// One generate() call.
class GenerationRun {
public:
    GenerationRun(const GenerationRequest& request, const std::function<bool(const TokenEvent&)>& on_token,
                  const Tokenizer* tokenizer, const std::atomic<bool>& cancel, int max_seq);

    std::vector<SequenceState>& sequences() { return m_seqs; }
    GenerationStats& stats() { return m_stats; }
    bool all_done() const;
    // True when request_cancel() was called; ends every sequence ("cancelled").
    bool check_cancel();

    // Records `token`, drawn for sequence b from `raw_logits` (the model's
    // logits before penalties and temperature), and tells the consumer. It
    // may end the sequence (EOS, stop string, token limit, context full) or
    // all of them (the consumer returned false). Returns false when the
    // sequence takes no more tokens.
    bool take_token(size_t b, int32_t token, std::span<const float> raw_logits);
    // The same with the token's probability known (greedy decoding on the
    // device); alternatives come from raw_logits when given and requested.
    bool take_token(size_t b, int32_t token, float probability, std::span<const float> raw_logits);
    void finish(size_t b, const std::string& reason);
    void finish_all(const std::string& reason);

    // Draws each running sequence's next token from its logits.
    void sample_step();
    // Plain decoding: runs each running sequence's last token through the
    // target, then draws the next ones.
    void plain_step(CachedModel& target);
    // Greedy, unpenalised, no alternatives: the device picks each token and
    // only ids and probabilities come back (plain_step's fast path).
    bool picks_on_device() const;
    // How many greedy steps the next decode burst of `model` may run: up to
    // its decode_burst(), no step past any running sequence's token limit or
    // any sequence's context. Below 2 a burst buys nothing.
    int burst_length(const CachedModel& model, int wanted) const;
    // Speculative decoding (speculative.cpp): the draft proposes up to
    // `lookahead` tokens per sequence, the target scores them in one chunk and
    // the exact accept/reject rule keeps a prefix plus one token of its own.
    void speculative_round(CachedModel& target, CachedModel& draft, int lookahead);
    // Its greedy form where the device picks (picks_on_device()), with k[b]
    // proposals for sequence b: proposals and verdicts are argmaxes, a
    // proposal is kept while it equals the target's pick, and only ids and
    // probabilities cross to the host.
    void greedy_speculative_round(CachedModel& target, CachedModel& draft, const std::vector<int>& k);

    GenerationStats finish_stats();

private:
    // plain_step's burst: `steps` greedy tokens for every sequence in one
    // submission; a sequence that has stopped rides along and its picks are
    // dropped.
    void greedy_burst(CachedModel& target, int steps);
    // Counts sequence b's round and rolls both caches back to what it kept.
    void end_round(size_t b, CachedModel& target, CachedModel& draft, size_t pending_at, int proposed, int accepted);

    const GenerationRequest& m_request;
    const std::function<bool(const TokenEvent&)>& m_on_token;
    const Tokenizer* m_tokenizer;
    const std::atomic<bool>& m_cancel;
    int m_max_seq;
    std::vector<SequenceState> m_seqs;
    GenerationStats m_stats;
};

} // namespace crucible
