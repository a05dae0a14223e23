// Generation speed benchmark: prefill tokens/s, and decode tokens/s with the
// KV cache, without it (every token recomputes the whole context) and, with a
// draft model, with speculative decoding, each measured at several generated
// lengths so a dashboard can plot how the gap grows with the context.
//
// Greedy decoding (or sampled, when asked) of random prompts; no tokenizer,
// no EOS, so every run reaches the full length. The decode rate at length L counts the tokens
// drawn after the first (which comes from the prefill, or from the first full
// forward when recomputing) up to the L-th: (L − 1) · batch tokens over the
// time between them.
#pragma once

#include "core/bench/bench_table.h"
#include "core/generate/cached_forward.h"
#include "core/generate/sampler.h"
#include "core/model/param_store.h"

#include <nlohmann/json.hpp>

#include <functional>
#include <vector>

namespace crucible {

struct GenerateBenchOptions {
    int prompt_tokens = 32;
    std::vector<int> lengths{64, 128, 256, 512};   // generated tokens at which rates are read; the last is generated
    int batch = 1;
    int repeats = 3;                // KV-cached (and speculative) runs; the median rate is reported
    bool recompute = true;          // also time full recomputation (one run: it is slow by design)
    int lookahead = 4;              // draft tokens per speculative round
    uint64_t seed = 1;              // of the prompts
    // Prompts: windows of this text (token ids) when given, which is what a
    // trained model (and a draft guessing its next tokens) should see;
    // otherwise random ids.
    std::vector<int32_t> prompt_text;
    CachedForward::Speedups speedups;   // graphs and fused decode kernels, where the backend has them
    // Greedy unless a temperature is set: then the decode rates include the
    // host's sampling (logits cross to the host). Full recomputation stays greedy.
    SamplingConfig sampling{.temperature = 0.0f};
    // Called before every timed run and every recomputed token: a suite's
    // cancellation throws from here.
    std::function<void()> before_run;
};

struct GenerateBenchPoint {
    int length = 0;
    double kv_tokens_per_s = 0.0;
    double recompute_tokens_per_s = 0.0;     // 0 when not measured
    double speculative_tokens_per_s = 0.0;   // 0 without a draft
};

struct GenerateBenchResult {
    std::string device;
    int batch = 1;
    int prompt_tokens = 0;
    double prefill_tokens_per_s = 0.0;       // median over the repeats
    std::vector<GenerateBenchPoint> points;
    double acceptance_rate = 0.0;            // speculative only
    double decode_model_share = 0.0;         // KV decoding: share of the time spent in the model (the
                                             // rest is host work: sampling, streaming), median
    size_t cache_bytes = 0;                  // KV cache and generation buffers (target and draft)

    nlohmann::json to_json() const;
};

// The target's context must hold prompt_tokens + the largest length (the
// caller extends a random model's seq_len, or trims the lengths). The draft,
// when given, shares the target's vocabulary.
GenerateBenchResult run_generate_bench(ParamStore& target, ParamStore* draft, const GenerateBenchOptions& options);

} // namespace crucible
