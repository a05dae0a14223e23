// Sampler: turns a row of logits into the next token.
//
// Order: repetition and presence penalties, temperature, top-k, top-p, min-p,
// then a draw from a seeded generator. The penalties act on the raw logits and
// the cuts see the tempered distribution, as in Hugging Face's generate().
// Temperature 0 is greedy.
#pragma once

#include "core/util/rng.h"

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace crucible {

struct SamplingConfig {
    float temperature = 0.8f;        // 0 = greedy
    int top_k = 0;                   // 0 = off
    float top_p = 1.0f;              // 1 = off
    float min_p = 0.0f;              // 0 = off; keep tokens with p ≥ min_p · p_max
    float repetition_penalty = 1.0f; // 1 = off; divides positive logits of seen tokens (multiplies negative)
    float presence_penalty = 0.0f;   // subtracted once from the logit of every seen token
    uint64_t seed = 0;

    std::vector<std::string> problems() const;
};

nlohmann::json to_json(const SamplingConfig& c);
SamplingConfig sampling_config_from_json(const nlohmann::json& j);

class Sampler {
public:
    explicit Sampler(const SamplingConfig& config);

    const SamplingConfig& config() const { return m_config; }
    // `logits` is modified in place (penalties, temperature). `history` are the
    // tokens so far (prompt and generated) for the penalties.
    int32_t sample(std::span<float> logits, std::span<const int32_t> history);

    // The probability distribution sample() would draw from (after penalties,
    // temperature and truncation), written into `probs`; for tests and for
    // speculative decoding.
    void distribution(std::span<float> logits, std::span<const int32_t> history, std::vector<float>& probs) const;
    // One draw from a probability vector (zeros are never drawn) with this
    // sampler's generator; speculative decoding draws from its corrected
    // distributions through it, so one seed decides a whole generation.
    int32_t draw(std::span<const float> probs);

    Rng& rng() { return m_rng; }

private:
    SamplingConfig m_config;
    Rng m_rng;
};

// The k most likely tokens under softmax(logits) with their probabilities,
// most likely first (the Chat page's "alternatives" view).
std::vector<std::pair<int32_t, float>> top_probabilities(std::span<const float> logits, int k);
// softmax(logits)[token]: the probability a streamed token event reports.
float token_probability(std::span<const float> logits, int32_t token);
// The same from the probability of the most likely token, 1 / Σ exp(l − max)
// (a device computes it with the step): no pass over the vocabulary's
// exponentials.
float token_probability(std::span<const float> logits, int32_t token, float top_probability);

} // namespace crucible
