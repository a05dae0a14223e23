#include "core/generate/sampler.h"

#include "core/util/json_read.h"
#include "kernels/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace crucible {

std::vector<std::string> SamplingConfig::problems() const
{
    std::vector<std::string> p;
    if (!(temperature >= 0.0f && temperature <= 100.0f)) p.emplace_back("temperature must be between 0 and 100");
    if (top_k < 0) p.emplace_back("top-k must be 0 (off) or positive");
    if (!(top_p > 0.0f && top_p <= 1.0f)) p.emplace_back("top-p must be in (0, 1]");
    if (!(min_p >= 0.0f && min_p < 1.0f)) p.emplace_back("min-p must be in [0, 1)");
    if (!(repetition_penalty > 0.0f)) p.emplace_back("repetition penalty must be positive (1 = off)");
    if (!std::isfinite(presence_penalty)) p.emplace_back("presence penalty must be a number");
    return p;
}

nlohmann::json to_json(const SamplingConfig& c)
{
    return {{"temperature", c.temperature},   {"top_k", c.top_k},
            {"top_p", c.top_p},               {"min_p", c.min_p},
            {"repetition_penalty", c.repetition_penalty},
            {"presence_penalty", c.presence_penalty}, {"seed", c.seed}};
}

SamplingConfig sampling_config_from_json(const nlohmann::json& j)
{
    JsonReader r(j, "sampling",
                 {"temperature", "top_k", "top_p", "min_p", "repetition_penalty", "presence_penalty", "seed"});
    SamplingConfig c;
    r.read("temperature", c.temperature);
    r.read("top_k", c.top_k);
    r.read("top_p", c.top_p);
    r.read("min_p", c.min_p);
    r.read("repetition_penalty", c.repetition_penalty);
    r.read("presence_penalty", c.presence_penalty);
    r.read("seed", c.seed);
    return c;
}

Sampler::Sampler(const SamplingConfig& config) : m_config(config), m_rng(config.seed)
{
    const auto p = config.problems();
    if (!p.empty()) throw Error("invalid sampling settings: " + p.front());
}

namespace {

void apply_penalties(const SamplingConfig& c, std::span<float> logits, std::span<const int32_t> history)
{
    if (c.repetition_penalty == 1.0f && c.presence_penalty == 0.0f) return;
    std::vector<char> seen(logits.size(), 0);
    for (int32_t t : history)
        if (t >= 0 && size_t(t) < logits.size()) seen[size_t(t)] = 1;
    for (size_t i = 0; i < logits.size(); ++i) {
        if (!seen[i]) continue;
        float& l = logits[i];
        l = l > 0.0f ? l / c.repetition_penalty : l * c.repetition_penalty;
        l -= c.presence_penalty;
    }
}

int32_t argmax(std::span<const float> v)
{
    return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

} // namespace

void Sampler::distribution(std::span<float> logits, std::span<const int32_t> history, std::vector<float>& probs) const
{
    const SamplingConfig& c = m_config;
    const size_t n = logits.size();
    probs.assign(n, 0.0f);
    apply_penalties(c, logits, history);
    if (c.temperature == 0.0f) {
        probs[size_t(argmax(logits))] = 1.0f;
        return;
    }
    // Softmax at temperature, in double for a stable normalisation.
    const float maxv = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(n);
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) sum += p[i] = std::exp(double(logits[i] - maxv) / c.temperature);
    for (auto& x : p) x /= sum;

    // Candidates by decreasing probability (ties broken by id, so draws are reproducible).
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    size_t keep = n;
    if (c.top_k > 0) keep = std::min<size_t>(keep, size_t(c.top_k));
    auto by_prob = [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b); };
    if (keep < n || c.top_p < 1.0f || c.min_p > 0.0f) {
        std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(keep), order.end(), by_prob);
        if (c.top_p < 1.0f) {
            // Smallest prefix whose mass reaches top_p of what top-k left
            // (the distribution as renormalised after top-k).
            double left = 0.0;
            for (size_t i = 0; i < keep; ++i) left += p[size_t(order[i])];
            double mass = 0.0;
            size_t i = 0;
            while (i < keep) {
                mass += p[size_t(order[i])];
                ++i;
                if (mass >= double(c.top_p) * left) break;
            }
            keep = i;
        }
        if (c.min_p > 0.0f) {
            const double threshold = double(c.min_p) * p[size_t(order[0])];
            size_t i = 1;
            while (i < keep && p[size_t(order[i])] >= threshold) ++i;
            keep = i;
        }
    }
    double kept = 0.0;
    for (size_t i = 0; i < keep; ++i) kept += p[size_t(order[i])];
    for (size_t i = 0; i < keep; ++i) probs[size_t(order[i])] = float(p[size_t(order[i])] / kept);
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history)
{
    CRUCIBLE_CHECK(!logits.empty(), "cannot sample from an empty vocabulary");
    if (m_config.temperature == 0.0f) {
        apply_penalties(m_config, logits, history);
        return argmax(logits);
    }
    std::vector<float> probs;
    distribution(logits, history, probs);
    return draw(probs);
}

int32_t Sampler::draw(std::span<const float> probs)
{
    CRUCIBLE_CHECK(!probs.empty(), "cannot sample from an empty vocabulary");
    double total = 0.0;
    for (float p : probs) total += p > 0.0f ? double(p) : 0.0;
    CRUCIBLE_CHECK(total > 0.0, "cannot sample from a distribution without mass");
    const double u = m_rng.uniform() * total;
    double acc = 0.0;
    int32_t last = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] <= 0.0f) continue;
        acc += probs[i];
        last = int32_t(i);
        if (u < acc) return int32_t(i);
    }
    return last;   // rounding left u just above the total
}

std::vector<std::pair<int32_t, float>> top_probabilities(std::span<const float> logits, int k)
{
    const size_t n = logits.size();
    if (n == 0 || k <= 0) return {};
    const float maxv = *std::max_element(logits.begin(), logits.end());
    double sum = 0.0;
    for (float l : logits) sum += std::exp(double(l - maxv));
    std::vector<int32_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    const size_t kk = std::min<size_t>(n, size_t(k));
    std::partial_sort(order.begin(), order.begin() + std::ptrdiff_t(kk), order.end(),
                      [&](int32_t a, int32_t b) { return logits[size_t(a)] > logits[size_t(b)]; });
    std::vector<std::pair<int32_t, float>> out;
    for (size_t i = 0; i < kk; ++i)
        out.emplace_back(order[i], float(std::exp(double(logits[size_t(order[i])] - maxv)) / sum));
    return out;
}

} // namespace crucible
