// GQA suite: the same model (width, depth, query heads, context) with fewer
// and fewer key/value heads, from MHA (as many as query heads) through GQA
// to MQA (one): the KV cache measured on the device, and the decode speed.
#include "core/bench/generate_bench.h"
#include "core/bench/suite_context.h"
#include "core/model/param_store.h"

#include <fmt/core.h>

namespace crucible::bench {

void run_gqa_suite(SuiteContext& c)
{
    ModelConfig base = bench_model_config(c.text("model"));
    const int context = c.integer("context"), new_tokens = c.integer("new_tokens"), batch = c.integer("batch");
    if (new_tokens < 2 || new_tokens >= context)
        throw Error(fmt::format("gqa: new_tokens must be at least 2 and below the context ({})", context));
    base.seq_len = std::max(base.seq_len, context);
    std::vector<int> heads;
    if (c.text("kv_heads").empty()) {
        for (int kv = base.n_heads; kv >= 1; kv /= 2)
            if (base.n_heads % kv == 0) heads.push_back(kv);
    } else {
        heads = c.integers("kv_heads");
    }
    for (int kv : heads)
        if (base.n_heads % kv != 0)
            throw Error(fmt::format("gqa: {} kv-heads do not divide the model's {} query heads", kv, base.n_heads));
    Backend& be = c.backend();
    size_t index = 0;
    for (int kv : heads) {
        c.step(index++, heads.size(), fmt::format("{} kv-heads of {}", kv, base.n_heads));
        ModelConfig m = base;
        m.n_kv_heads = kv;
        const size_t cache = measured_kv_cache_bytes(be, m, batch, context);
        ParamStore params(be, m, false);
        params.initialize(1);
        GenerateBenchOptions o;
        o.prompt_tokens = context - new_tokens;
        o.lengths = {new_tokens};
        o.batch = batch;
        o.repeats = c.tiny() ? 1 : 2;
        o.recompute = false;
        o.before_run = [&c] { c.check_cancel(); };
        c.check_cancel();
        const GenerateBenchResult r = run_generate_bench(params, nullptr, o);
        Row row = make_row(c, "kv_cache", "kv_heads", kv);
        row.tags = {{"model", base.name}};
        add(row, "cache_bytes", double(cache), "bytes");
        add(row, "tok_s", r.points.back().kv_tokens_per_s, "tok/s");
        c.emit(std::move(row));
    }
    c.note(fmt::format("{} ({} query heads, head dim {}), context {}, batch {}: KV cache measured on the device; "
                       "decode tok/s of {} new tokens",
                       base.name, base.n_heads, base.resolved_head_dim(), context, batch, new_tokens));
}

} // namespace crucible::bench
