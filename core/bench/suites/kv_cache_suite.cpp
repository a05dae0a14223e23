// KV cache vs recompute: decode tokens/s at each generated length with the
// cache (each new token attends to stored keys: O(n) work per token) and
// with full recomputation (the whole context through the model again:
// O(n²) in all); then the cache's device memory over the context length.
#include "core/bench/generate_bench.h"
#include "core/bench/suite_context.h"
#include "core/model/param_store.h"

#include <fmt/core.h>

#include <algorithm>

namespace crucible::bench {

void run_kv_cache_suite(SuiteContext& c)
{
    ModelConfig m = bench_model_config(c.text("model"));
    std::vector<int> lengths = c.integers("lengths");
    std::sort(lengths.begin(), lengths.end());
    const std::vector<int> contexts = c.integers("contexts");
    const int prompt = c.integer("prompt");
    if (lengths.front() < 2) throw Error("kv_cache: generated lengths must be at least 2 tokens");
    m.seq_len = std::max(m.seq_len, prompt + lengths.back());
    Backend& be = c.backend();
    const size_t total = 2 + contexts.size();

    c.step(0, total, "decode with the KV cache");
    ParamStore params(be, m, false);
    params.initialize(1);
    GenerateBenchOptions o;
    o.prompt_tokens = prompt;
    o.lengths = lengths;
    o.repeats = c.tiny() ? 1 : 2;
    o.recompute = false;
    o.before_run = [&c] { c.check_cancel(); };
    const GenerateBenchResult kv = run_generate_bench(params, nullptr, o);
    for (const auto& p : kv.points) {
        Row r = make_row(c, "kv_cache", "length", p.length, "tokens");
        r.tags = {{"model", m.name}};
        add(r, "tok_s", p.kv_tokens_per_s, "tok/s");
        c.emit(std::move(r));
    }
    c.step(1, total, "decode recomputing the whole context");
    o.repeats = 1;
    o.recompute = true;
    const GenerateBenchResult re = run_generate_bench(params, nullptr, o);
    for (const auto& p : re.points) {
        Row r = make_row(c, "recompute", "length", p.length, "tokens");
        r.tags = {{"model", m.name}};
        add(r, "tok_s", p.recompute_tokens_per_s, "tok/s");
        c.emit(std::move(r));
    }
    size_t index = 2;
    for (int ctx : contexts) {
        c.step(index++, total, fmt::format("KV cache memory at context {}", ctx));
        ModelConfig mc = m;
        mc.seq_len = std::max(mc.seq_len, ctx);
        Row r = make_row(c, "cache_memory", "context", ctx, "tokens");
        r.tags = {{"model", m.name}};
        add(r, "cache_bytes", double(measured_kv_cache_bytes(be, mc, 1, ctx)), "bytes");
        c.emit(std::move(r));
    }
    c.note(fmt::format("{}: prompt {} tokens, greedy, batch 1; tok/s at length L = (L-1) / time from the first to the "
                       "L-th token; cache memory measured on the device for one sequence",
                       m.name, prompt));
}

} // namespace crucible::bench
