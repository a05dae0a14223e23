// Fine-tuning suite: the same base model trained in full (gradients and
// optimizer state for every weight) and through LoRA adapters of a few
// ranks (the base frozen: no gradients, no state): trainable parameters,
// training memory and step time.
#include "core/bench/suite_context.h"
#include "core/model/lora.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/util/rng.h"

#include <fmt/core.h>

#include <sys/resource.h>

namespace crucible::bench {

void run_finetune_suite(SuiteContext& c)
{
    ModelConfig m = bench_model_config(c.text("model"));
    const std::vector<int> ranks = c.integers("ranks");
    const int batch = c.integer("batch"), seq = std::min(c.integer("seq"), m.seq_len), steps = c.integer("steps");
    const int warmup = c.tiny() ? 1 : 2;
    Backend& be = c.backend();
    Rng rng(3);
    std::vector<int32_t> tokens(size_t(batch) * size_t(seq)), targets(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
        tokens[i] = int32_t(rng.below(uint64_t(m.vocab_size)));
        targets[i] = int32_t(rng.below(uint64_t(m.vocab_size)));
    }
    const float scale = 1.0f / float(tokens.size());
    const std::map<std::string, std::string> tags{{"model", m.name}};
    const size_t total = 1 + ranks.size();

    // Memory each way: our allocations, and on CUDA the device's own count.
    auto emit = [&](const std::string& series, double x, int64_t trainable, size_t bytes, size_t device_taken,
                    const Timing& t) {
        Row r = make_row(c, series, "rank", x);
        r.tags = tags;
        add(r, "params", double(trainable), "");
        add(r, "bytes", double(bytes), "bytes");
        if (device_taken > 0) add(r, "device_bytes", double(device_taken), "bytes");
        add(r, "ms", t.median_ms, "ms");
        c.emit(std::move(r));
    };
    auto taken = [&](const MemoryInfo& before) {
        const MemoryInfo now = be.memory_info();
        return c.cuda() && before.free_bytes > now.free_bytes ? before.free_bytes - now.free_bytes : size_t(0);
    };

    {
        c.step(0, total, "full fine-tuning");
        const MemoryInfo before = be.memory_info();
        ParamStore params(be, m, true);
        params.initialize(1);
        Optimizer opt(params, OptimizerConfig{});
        Transformer model(params, batch, seq, true);
        auto step = [&] {
            c.check_cancel();
            params.zero_grads();
            model.train_micro_batch(tokens.data(), targets.data(), batch, seq, scale);
            opt.step(1.0);
        };
        const Timing t = time_repeated(be, step, warmup, steps);
        emit("full", 0, count_params(m).total(), params.bytes() + opt.bytes() + model.activations().bytes(),
             taken(before), t);
    }
    size_t index = 1;
    for (int rank : ranks) {
        c.step(index++, total, fmt::format("LoRA rank {}", rank));
        const MemoryInfo before = be.memory_info();
        ParamStore base(be, m, false);
        base.initialize(1);
        LoraConfig lc;
        lc.rank = rank;
        lc.alpha = float(2 * rank);
        LoraAdapters adapters(be, m, lc, true);
        adapters.initialize(2);
        Optimizer opt(adapters.store(), OptimizerConfig{});
        Transformer model(base, batch, seq, true, &adapters);
        auto step = [&] {
            c.check_cancel();
            adapters.store().zero_grads();
            model.train_micro_batch(tokens.data(), targets.data(), batch, seq, scale);
            opt.step(1.0);
        };
        const Timing t = time_repeated(be, step, warmup, steps);
        emit("lora", rank, adapters.trainable_parameters(),
             base.bytes() + adapters.store().bytes() + opt.bytes() + model.activations().bytes(), taken(before), t);
    }
    c.note(fmt::format("{}, batch {}×{}, AdamW; memory = weights, gradients, optimizer state and activations as "
                       "allocated{}; LoRA on q_proj, k_proj, v_proj and o_proj",
                       m.name, batch, seq, c.cuda() ? " (device_bytes: the device's count)" : ""));
}

} // namespace crucible::bench
