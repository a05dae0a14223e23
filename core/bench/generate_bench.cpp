#include "core/bench/generate_bench.h"

#include "core/generate/generator.h"
#include "core/model/transformer.h"
#include "core/util/rng.h"
#include "kernels/error.h"

#include <algorithm>
#include <chrono>

namespace crucible {

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v)
{
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Decode rate at each length from the time each token index was reached.
std::vector<double> rates(const std::vector<Clock::time_point>& reached, const std::vector<int>& lengths, int batch)
{
    std::vector<double> out;
    for (int length : lengths) {
        const double seconds = std::chrono::duration<double>(reached[size_t(length)] - reached[1]).count();
        out.push_back(seconds > 0 ? double(length - 1) * batch / seconds : 0.0);
    }
    return out;
}

struct TimedRun {
    std::vector<double> rates;   // per length
    double prefill_tokens_per_s = 0.0;
    double acceptance_rate = 0.0;
    double model_share = 0.0;
};

TimedRun run_cached(Generator& gen, const std::vector<std::vector<int32_t>>& prompts, const std::vector<int>& lengths,
                    int batch, const SamplingConfig& sampling)
{
    GenerationRequest r;
    r.prompts = prompts;
    r.max_new_tokens = lengths.back();
    r.sampling = sampling;
    r.stop_at_eos = false;
    std::vector<Clock::time_point> reached(size_t(lengths.back()) + 1);
    size_t count = 0;
    const GenerationStats st = gen.generate(r, [&](const TokenEvent& e) {
        if (e.sequence == 0) reached[++count] = Clock::now();
        return true;
    });
    CRUCIBLE_CHECK(count == size_t(lengths.back()), "the benchmark generation stopped early: " + st.stop_reason);
    return TimedRun{rates(reached, lengths, batch), st.prefill_tokens_per_s(), st.acceptance_rate(),
                    st.decode_seconds > 0 ? st.decode_model_seconds / st.decode_seconds : 0.0};
}

// Greedy decoding that runs the whole context through the model for every token.
std::vector<double> run_recompute(ParamStore& params, std::vector<std::vector<int32_t>> seqs,
                                  const std::vector<int>& lengths, int batch, const std::function<void()>& before)
{
    const int64_t longest = int64_t(seqs[0].size()) + lengths.back();
    Transformer model(params, batch, longest, false);
    const int64_t vocab = params.config().vocab_size;
    std::vector<Clock::time_point> reached(size_t(lengths.back()) + 1);
    std::vector<int32_t> flat;
    std::vector<float> logits;
    for (int i = 1; i <= lengths.back(); ++i) {
        if (before) before();
        const int64_t len = int64_t(seqs[0].size());
        flat.clear();
        for (const auto& s : seqs) flat.insert(flat.end(), s.begin(), s.end());
        model.last_logits(flat.data(), batch, len, logits);
        for (int b = 0; b < batch; ++b) {
            const auto row = logits.begin() + std::ptrdiff_t(b * vocab);
            seqs[size_t(b)].push_back(int32_t(std::max_element(row, row + vocab) - row));
        }
        reached[size_t(i)] = Clock::now();
    }
    return rates(reached, lengths, batch);
}

} // namespace

nlohmann::json GenerateBenchResult::to_json() const
{
    nlohmann::json points_json = nlohmann::json::array();
    for (const auto& p : points) {
        nlohmann::json j{{"length", p.length}, {"kv_tokens_per_s", p.kv_tokens_per_s}};
        j["recompute_tokens_per_s"] = p.recompute_tokens_per_s > 0 ? nlohmann::json(p.recompute_tokens_per_s) : nlohmann::json();
        j["speculative_tokens_per_s"] =
            p.speculative_tokens_per_s > 0 ? nlohmann::json(p.speculative_tokens_per_s) : nlohmann::json();
        points_json.push_back(j);
    }
    return {{"device", device},         {"batch", batch},
            {"prompt_tokens", prompt_tokens}, {"prefill_tokens_per_s", prefill_tokens_per_s},
            {"points", points_json},    {"acceptance_rate", acceptance_rate},
            {"decode_model_share", decode_model_share},
            {"cache_bytes", cache_bytes}};
}

GenerateBenchResult run_generate_bench(ParamStore& target, ParamStore* draft, const GenerateBenchOptions& o)
{
    std::vector<int> lengths = o.lengths;
    std::sort(lengths.begin(), lengths.end());
    lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
    if (lengths.empty() || lengths.front() < 2) throw Error("generation lengths must be at least 2 tokens");
    if (o.prompt_tokens < 1 || o.batch < 1) throw Error("the benchmark needs a prompt and a batch of at least 1");
    const int context = o.prompt_tokens + lengths.back();
    if (context > target.config().seq_len)
        throw Error("a prompt of " + std::to_string(o.prompt_tokens) + " and " + std::to_string(lengths.back()) +
                    " new tokens exceed the model's context of " + std::to_string(target.config().seq_len));

    Rng rng(o.seed);
    std::vector<std::vector<int32_t>> prompts(size_t(o.batch));
    const auto text_size = int64_t(o.prompt_text.size());
    if (text_size > 0 && text_size < o.prompt_tokens)
        throw Error("the prompt text has fewer tokens than one prompt of " + std::to_string(o.prompt_tokens));
    for (auto& p : prompts) {
        if (text_size > 0) {
            const auto start = std::ptrdiff_t(rng.below(uint64_t(text_size - o.prompt_tokens + 1)));
            p.assign(o.prompt_text.begin() + start, o.prompt_text.begin() + start + o.prompt_tokens);
        } else {
            for (int i = 0; i < o.prompt_tokens; ++i) p.push_back(int32_t(rng.below(uint64_t(target.config().vocab_size))));
        }
    }

    GenerateBenchResult result;
    result.device = target.backend().name();
    result.batch = o.batch;
    result.prompt_tokens = o.prompt_tokens;
    for (int length : lengths) result.points.push_back(GenerateBenchPoint{length});

    // KV cache: warm up once (allocations, thread pools, caches), then repeat.
    Generator gen(target, o.batch, context);
    gen.set_speedups(o.speedups);
    result.cache_bytes = gen.bytes();
    auto before = [&] {
        if (o.before_run) o.before_run();
    };
    before();
    run_cached(gen, prompts, {2, std::min(16, lengths.back())}, o.batch, o.sampling);
    std::vector<std::vector<double>> kv(lengths.size());
    std::vector<double> prefill, model_share;
    for (int r = 0; r < std::max(o.repeats, 1); ++r) {
        before();
        const TimedRun run = run_cached(gen, prompts, lengths, o.batch, o.sampling);
        for (size_t i = 0; i < lengths.size(); ++i) kv[i].push_back(run.rates[i]);
        prefill.push_back(run.prefill_tokens_per_s);
        model_share.push_back(run.model_share);
    }
    result.prefill_tokens_per_s = median(prefill);
    result.decode_model_share = median(model_share);
    for (size_t i = 0; i < lengths.size(); ++i) result.points[i].kv_tokens_per_s = median(kv[i]);

    if (draft) {
        gen.set_draft(draft, o.lookahead);
        result.cache_bytes = gen.bytes();
        before();
        run_cached(gen, prompts, {2, std::min(16, lengths.back())}, o.batch, o.sampling);
        std::vector<std::vector<double>> spec(lengths.size());
        std::vector<double> acceptance;
        for (int r = 0; r < std::max(o.repeats, 1); ++r) {
            before();
            const TimedRun run = run_cached(gen, prompts, lengths, o.batch, o.sampling);
            for (size_t i = 0; i < lengths.size(); ++i) spec[i].push_back(run.rates[i]);
            acceptance.push_back(run.acceptance_rate);
        }
        for (size_t i = 0; i < lengths.size(); ++i) result.points[i].speculative_tokens_per_s = median(spec[i]);
        result.acceptance_rate = median(acceptance);
    }

    if (o.recompute) {
        const std::vector<double> slow = run_recompute(target, prompts, lengths, o.batch, o.before_run);
        for (size_t i = 0; i < lengths.size(); ++i) result.points[i].recompute_tokens_per_s = slow[i];
    }
    return result;
}

} // namespace crucible
