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

// The largest logit. Eight independent running maxima, which the compiler
// keeps in one vector register: max_element's compare-and-branch per
// element costs several times as much over a 32K vocabulary.
float largest(std::span<const float> v)
{
    float lanes[8];
    std::fill(std::begin(lanes), std::end(lanes), v[0]);
    size_t i = 0;
    for (; i + 8 <= v.size(); i += 8)
        for (size_t j = 0; j < 8; ++j) lanes[j] = std::max(lanes[j], v[i + j]);
    for (; i < v.size(); ++i) lanes[0] = std::max(lanes[0], v[i]);
    return *std::max_element(std::begin(lanes), std::end(lanes));
}

// The first token with the largest logit (0 when the row holds NaNs).
int32_t argmax(std::span<const float> v)
{
    const auto it = std::find(v.begin(), v.end(), largest(v));
    return it == v.end() ? 0 : int32_t(it - v.begin());
}

// Σ exp((l − top)·inv_temperature) over the vocabulary: exponentials in
// float (most of a draw's cost at 32K tokens), the sum in double.
double exp_sum(std::span<const float> logits, float top, float inv_temperature)
{
    double sum = 0.0;
    for (float l : logits) sum += double(std::exp((l - top) * inv_temperature));
    return sum;
}

// Whether token a ranks before token b: the larger logit, the lower id
// among equals (so draws are reproducible). Temperature keeps the order.
struct RanksBefore {
    std::span<const float> logits;
    bool operator()(int32_t a, int32_t b) const
    {
        const float la = logits[size_t(a)], lb = logits[size_t(b)];
        return la > lb || (la == lb && a < b);
    }
};

// The `count` highest-ranked token ids, best first. One pass with a heap of
// the best so far: nearly every logit loses its first comparison, so a 32K
// vocabulary costs about one comparison per token instead of a sort.
std::vector<int32_t> leading_ids(std::span<const float> logits, size_t count)
{
    const size_t n = logits.size();
    const RanksBefore before{logits};
    std::vector<int32_t> ids(std::min(count, n));
    std::iota(ids.begin(), ids.end(), 0);
    if (ids.size() < n) {
        std::make_heap(ids.begin(), ids.end(), before);   // front: the worst of those kept
        float floor = logits[size_t(ids.front())];
        for (size_t i = ids.size(); i < n; ++i) {
            if (logits[i] < floor || !before(int32_t(i), ids.front())) continue;
            std::pop_heap(ids.begin(), ids.end(), before);
            ids.back() = int32_t(i);
            std::push_heap(ids.begin(), ids.end(), before);
            floor = logits[size_t(ids.front())];
        }
    }
    std::sort(ids.begin(), ids.end(), before);
    return ids;
}

// What a draw may pick at temperature > 0, after top-k, top-p and min-p:
// ids and their probabilities (summing to 1). Only the tokens that can
// survive the cuts are ranked: top-k ranks k, and top-p or min-p alone rank
// a prefix that grows until it decides the cut (usually a few dozen tokens).
void truncated(const SamplingConfig& c, std::span<const float> logits, std::vector<int32_t>& ids,
               std::vector<double>& probs)
{
    const size_t n = logits.size();
    const float top = largest(logits);
    const float inv_temperature = 1.0f / c.temperature;
    // Proportional to the probability; 1 for the most likely token. In float:
    // a vocabulary's worth of exponentials is most of a draw's cost (sums
    // are in double).
    auto weight = [logits, top, inv_temperature](int32_t i) {
        return double(std::exp((logits[size_t(i)] - top) * inv_temperature));
    };
    auto normalise = [&](size_t keep) {
        ids.resize(keep);
        probs.resize(keep);
        double kept = 0.0;
        for (double p : probs) kept += p;
        for (double& p : probs) p /= kept;
    };

    const bool top_k = c.top_k > 0 && size_t(c.top_k) < n;
    if (!top_k && c.top_p >= 1.0f && c.min_p <= 0.0f) {   // no cut: every token
        ids.resize(n);
        std::iota(ids.begin(), ids.end(), 0);
        probs.resize(n);
        for (size_t i = 0; i < n; ++i) probs[i] = weight(int32_t(i));
        return normalise(n);
    }
    // Top-p's mass is measured in what top-k left (renormalised), else in all.
    double left = 0.0;
    if (!top_k && c.top_p < 1.0f) left = exp_sum(logits, top, inv_temperature);
    size_t count = top_k ? size_t(c.top_k) : std::min<size_t>(n, 64);
    for (;;) {
        ids = leading_ids(logits, count);
        probs.resize(ids.size());
        for (size_t i = 0; i < ids.size(); ++i) probs[i] = weight(ids[i]);
        if (top_k) left = std::accumulate(probs.begin(), probs.end(), 0.0);
        const bool complete = top_k || ids.size() == n;   // nothing below these could be kept
        size_t keep = ids.size();
        bool decided = true;
        if (c.top_p < 1.0f) {   // the smallest prefix reaching top_p of `left`
            double mass = 0.0;
            size_t i = 0;
            while (i < keep && mass < double(c.top_p) * left) mass += probs[i++];
            decided = complete || mass >= double(c.top_p) * left;
            keep = i;
        }
        if (decided && c.min_p > 0.0f) {   // those within min_p of the most likely
            const double threshold = double(c.min_p) * probs[0];
            size_t i = 1;
            while (i < keep && probs[i] >= threshold) ++i;
            decided = complete || i < ids.size();
            keep = i;
        }
        if (decided) return normalise(keep);
        count = std::min(n, count * 4);
    }
}

} // namespace

void Sampler::distribution(std::span<float> logits, std::span<const int32_t> history, std::vector<float>& probs) const
{
    probs.assign(logits.size(), 0.0f);
    apply_penalties(m_config, logits, history);
    if (m_config.temperature == 0.0f) {
        probs[size_t(argmax(logits))] = 1.0f;
        return;
    }
    std::vector<int32_t> ids;
    std::vector<double> p;
    truncated(m_config, logits, ids, p);
    for (size_t i = 0; i < ids.size(); ++i) probs[size_t(ids[i])] = float(p[i]);
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> history)
{
    CRUCIBLE_CHECK(!logits.empty(), "cannot sample from an empty vocabulary");
    apply_penalties(m_config, logits, history);
    if (m_config.temperature == 0.0f) return argmax(logits);
    std::vector<int32_t> ids;
    std::vector<double> p;
    truncated(m_config, logits, ids, p);
    // The draw draw(distribution(...)) would make, the same walk in id order
    // over the same (float) probabilities, without a vocabulary-sized vector.
    std::vector<std::pair<int32_t, float>> kept(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) kept[i] = {ids[i], float(p[i])};
    if (!std::is_sorted(kept.begin(), kept.end())) std::sort(kept.begin(), kept.end());   // uncut: sorted already
    double total = 0.0;
    for (const auto& [id, prob] : kept) total += prob > 0.0f ? double(prob) : 0.0;
    CRUCIBLE_CHECK(total > 0.0, "cannot sample from a distribution without mass");
    const double u = m_rng.uniform() * total;
    double acc = 0.0;
    int32_t last = 0;
    for (const auto& [id, prob] : kept) {
        if (prob <= 0.0f) continue;
        acc += prob;
        last = id;
        if (u < acc) return id;
    }
    return last;
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
    if (logits.empty() || k <= 0) return {};
    const float top = largest(logits);
    const double sum = exp_sum(logits, top, 1.0f);
    std::vector<std::pair<int32_t, float>> out;
    for (int32_t id : leading_ids(logits, size_t(k)))
        out.emplace_back(id, float(double(std::exp(logits[size_t(id)] - top)) / sum));
    return out;
}

float token_probability(std::span<const float> logits, int32_t token)
{
    const float top = largest(logits);
    return float(double(std::exp(logits[size_t(token)] - top)) / exp_sum(logits, top, 1.0f));
}

float token_probability(std::span<const float> logits, int32_t token, float top_probability)
{
    return top_probability * std::exp(logits[size_t(token)] - largest(logits));
}

} // namespace crucible
