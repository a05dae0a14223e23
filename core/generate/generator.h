// Generator: KV-cached, streaming text generation for one model.
//
// Prefill runs the prompt through the model once, filling a KvCache that holds
// n_kv_heads (not n_heads) keys and values per layer; each decode step then
// runs one new token per sequence against the cache. Tokens stream out through
// a callback as they are sampled; cancellation is honoured between tokens.
// Several prompts can be generated at once (batched), and a smaller draft
// model can propose tokens for speculative decoding (speculative.cpp).
#pragma once

#include "core/data/tokenizer.h"
#include "core/generate/cached_forward.h"
#include "core/generate/sampler.h"
#include "core/model/param_store.h"

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace crucible {

struct GenerationRequest {
    std::vector<std::vector<int32_t>> prompts;   // one per sequence (batched generation)
    int max_new_tokens = 256;
    SamplingConfig sampling;
    std::vector<std::string> stop_strings;       // generation of a sequence ends after one appears
    bool stop_at_speaker_line = false;           // ... or at a line that starts "Name:" (TextStream)
    bool stop_at_eos = true;
    std::vector<int32_t> stop_tokens;            // more tokens that end a sequence as EOS does (a chat template's <|im_end|>)
    int top_alternatives = 0;                    // > 0: report the k most likely tokens at each step
    // Keep the keys and values of the longest prefix each prompt shares with
    // the tokens the previous request left in the cache, and run only the
    // rest (a chat's growing conversation). Off, every prompt runs in full.
    bool reuse_cache = false;
};

struct TokenEvent {
    int sequence = 0;                            // index into GenerationRequest::prompts
    int32_t token = 0;
    std::string bytes;                           // exactly what this token decodes to
    float probability = 0.0f;                    // of the chosen token under the model (temperature 1)
    std::vector<std::pair<int32_t, float>> alternatives;   // when requested
    // The text to show now: this token's bytes and any held back before,
    // minus bytes that might begin a stop string or end in an incomplete
    // UTF-8 character (released with a later event, or with the last one of
    // the sequence). A stop string itself is never shown.
    std::string text;
};

struct GenerationStats {
    int64_t prompt_tokens = 0;
    int64_t generated_tokens = 0;
    double prefill_seconds = 0.0;
    double decode_seconds = 0.0;
    double decode_model_seconds = 0.0;           // plain decoding: the part of decode_seconds spent in
                                                 // the model (device work and transfers); the rest is
                                                 // sampling and streaming on the host
    double prefill_tokens_per_s() const { return prefill_seconds > 0 ? double(prompt_tokens) / prefill_seconds : 0.0; }
    double decode_tokens_per_s() const { return decode_seconds > 0 ? double(generated_tokens) / decode_seconds : 0.0; }
    std::string stop_reason;                     // "length", "eos", "stop string", "cancelled", "context full"
                                                 // (batched: why the last running sequence stopped)
    std::vector<std::string> stop_reasons;       // per sequence
    std::vector<std::vector<int32_t>> tokens;    // per sequence: the generated tokens (no EOS)
    std::vector<std::string> texts;              // per sequence: their text, up to a stop string
    // Speculative decoding only.
    int64_t draft_proposed = 0;
    int64_t draft_accepted = 0;
    double acceptance_rate() const { return draft_proposed ? double(draft_accepted) / double(draft_proposed) : 0.0; }
};

class Generator {
public:
    // Allocates a KV cache for up to max_batch sequences of max_seq tokens
    // (prompt + generated; at most the model's seq_len) on params' backend.
    Generator(ParamStore& params, const Tokenizer& tokenizer, int max_batch, int max_seq);
    // Without a tokenizer (benchmarks, tests on random weights): events carry
    // ids only, and stop strings and EOS are not available.
    Generator(ParamStore& params, int max_batch, int max_seq);
    ~Generator();

    int max_batch() const;
    int max_seq() const;
    // Device bytes of the KV caches and generation buffers (target and draft).
    size_t bytes() const;

    // Speculative decoding: a smaller model with the same tokenizer proposes
    // `lookahead` tokens (1..kMaxLookahead) per step. nullptr turns it off.
    // The draft must live on the same kind of device and share the vocabulary.
    void set_draft(ParamStore* draft, int lookahead = 4);
    // How decode steps run (graphs, fused kernels); all on by default.
    void set_speedups(const CachedForward::Speedups& s);
    static constexpr int kMaxLookahead = 16;

    // Runs the request; on_token returns false to stop. Thread-safe cancel:
    // request_cancel() from another thread ends generation within one token
    // (a request made before generate() starts is discarded; async-signal-safe,
    // so a SIGINT handler may call it). Throws Error for a bad request (no
    // prompt, too many, one longer than max_seq, bad sampling settings).
    GenerationStats generate(const GenerationRequest& request,
                             const std::function<bool(const TokenEvent&)>& on_token);
    void request_cancel();

private:
    struct Impl;
    std::unique_ptr<Impl> m_impl;
};

} // namespace crucible
