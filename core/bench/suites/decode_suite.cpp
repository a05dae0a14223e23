// Decode suite: KV-cached decode tokens/s over the batch size, with the
// backend's graphs, decode bursts and fused decode kernels on, and with
// them off (each step launched op by op), where the backend has them.
#include "core/bench/generate_bench.h"
#include "core/bench/suite_context.h"
#include "core/model/param_store.h"

#include <fmt/core.h>

namespace crucible::bench {

void run_decode_suite(SuiteContext& c)
{
    ModelConfig m = bench_model_config(c.text("model"));
    const std::vector<int> batches = c.integers("batches");
    const int new_tokens = c.integer("new_tokens"), repeats = c.integer("repeats");
    if (new_tokens < 2) throw Error("decode: new_tokens must be at least 2");
    const int prompt = c.tiny() ? 4 : 16;
    m.seq_len = std::max(m.seq_len, prompt + new_tokens);
    Backend& be = c.backend();
    ParamStore params(be, m, false);
    params.initialize(1);
    // Graphs and bursts exist on CUDA; on the CPU both settings run the same
    // code, so only one series is measured there.
    const bool has_graphs = c.cuda();
    const std::vector<bool> modes = has_graphs ? std::vector<bool>{true, false} : std::vector<bool>{false};
    size_t index = 0;
    const size_t total = batches.size() * modes.size();
    for (int batch : batches)
        for (bool graphs : modes) {
            c.step(index++, total, fmt::format("decode batch {} graphs {}", batch, graphs ? "on" : "off"));
            GenerateBenchOptions o;
            o.prompt_tokens = prompt;
            o.lengths = {new_tokens};
            o.batch = batch;
            o.repeats = repeats;
            o.recompute = false;
            o.before_run = [&c] { c.check_cancel(); };
            o.speedups.graphs = graphs;
            o.speedups.fused_kernels = graphs;
            o.speedups.decode_burst = graphs ? 0 : 1;
            const GenerateBenchResult r = run_generate_bench(params, nullptr, o);
            Row row = make_row(c, graphs ? "graphs" : "no_graphs", "batch", batch);
            row.tags = {{"model", m.name}};
            add(row, "tok_s", r.points.back().kv_tokens_per_s, "tok/s");
            add(row, "prefill_tok_s", r.prefill_tokens_per_s, "tok/s");
            c.emit(std::move(row));
        }
    c.note(fmt::format("{}: prompt {} tokens, {} new tokens, greedy; tok/s counts every sequence of the batch{}",
                       m.name, prompt, new_tokens,
                       has_graphs ? "; graphs on = CUDA graphs, decode bursts and fused decode kernels"
                                  : "; the CPU backend has no graphs, so one series"));
}

} // namespace crucible::bench
