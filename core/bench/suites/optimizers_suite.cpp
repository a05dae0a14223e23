// Optimizer race: the same byte-level model on the same text, trained with
// AdamW and with Muon (Muon on the hidden matrices, AdamW on the rest at
// the learning rate AdamW's sweep picked). Each optimizer first runs a short
// sweep over its learning rates (seed 1); the best goes on to the full runs,
// one per seed, whose validation bits/byte are rows against the step and
// against the training seconds (evaluation time excluded).
#include "core/bench/byte_model.h"
#include "core/bench/suite_context.h"

#include <fmt/core.h>

#include <chrono>
#include <sstream>

namespace crucible::bench {

namespace {

std::vector<double> numbers(const SuiteContext& c, const std::string& key)
{
    std::vector<double> out;
    for (const std::string& w : c.words(key)) {
        try {
            size_t used = 0;
            const double v = std::stod(w, &used);
            if (used == w.size() && v > 0) {
                out.push_back(v);
                continue;
            }
        } catch (...) {
        }
        throw Error(fmt::format("optimizers option {} must be a comma-separated list of positive numbers, got \"{}\"",
                                key, c.text(key)));
    }
    return out;
}

OptimizerConfig config_of(const std::string& name, double lr, double adamw_lr)
{
    OptimizerConfig o;
    o.type = optimizer_type_from_string(name);
    if (o.type == OptimizerType::muon) {
        o.muon_lr = float(lr);
        o.lr = float(adamw_lr);
    } else {
        o.lr = float(lr);
    }
    return o;
}

} // namespace

void run_optimizers_suite(SuiteContext& c)
{
    const ModelConfig m = bench_model_config(c.text("model"));
    const int steps = c.integer("steps"), every = std::max(1, c.integer("eval_every")), batch = c.integer("batch"),
              seq = c.integer("seq"), sweep_steps = c.integer("sweep_steps");
    const std::vector<int> seeds = c.integers("seeds");
    const std::vector<double> adamw_lrs = numbers(c, "adamw_lrs"), muon_lrs = numbers(c, "muon_lrs");
    const int eval_batches = c.tiny() ? 1 : 4;
    Backend& be = c.backend();
    const size_t total = adamw_lrs.size() + muon_lrs.size() + 2 * seeds.size();
    size_t index = 0;

    auto sweep = [&](const std::string& name, const std::vector<double>& lrs, double adamw_lr) {
        double best_lr = lrs.front(), best = 1e300;
        for (double lr : lrs) {
            c.step(index++, total, fmt::format("{} sweep, lr {:g}", name, lr));
            ByteModelRun run(be, m, config_of(name, lr, adamw_lr), batch, seq, 1);
            for (int s = 0; s < sweep_steps; ++s) {
                c.check_cancel();
                run.step();
            }
            const double bpb = run.validation_bits_per_byte(eval_batches);
            Row r = make_row(c, name, "lr", lr);
            r.tags = {{"phase", "sweep"}};
            add(r, "bpb", bpb, "bits/byte");
            c.emit(std::move(r));
            if (std::isfinite(bpb) && bpb < best) {
                best = bpb;
                best_lr = lr;
            }
        }
        return best_lr;
    };
    const double adamw_lr = sweep("adamw", adamw_lrs, 0.0);
    const double muon_lr = sweep("muon", muon_lrs, adamw_lr);

    for (const auto& [optimizer, optimizer_lr] : {std::pair<std::string, double>{"adamw", adamw_lr}, {"muon", muon_lr}})
        for (int seed : seeds) {
            // Plain copies: lambdas below cannot capture structured bindings
            // before C++20's relaxation, which clang 14 (the fuzz and sanitizer
            // builds) lacks.
            const std::string& name = optimizer;
            const double lr = optimizer_lr;
            c.step(index++, total, fmt::format("{} at lr {:g}, seed {}", name, lr, seed));
            ByteModelRun run(be, m, config_of(name, lr, adamw_lr), batch, seq, uint64_t(seed));
            double seconds = 0.0;
            auto evaluate = [&](int step) {
                const double bpb = run.validation_bits_per_byte(eval_batches);
                Row by_step = make_row(c, name, "step", step);
                by_step.tags = {{"seed", std::to_string(seed)}};
                add(by_step, "bpb", bpb, "bits/byte");
                add(by_step, "seconds", seconds, "s");
                add(by_step, "lr", lr, "");
                c.emit(by_step);
                Row by_time = make_row(c, name, "seconds", seconds, "s");
                by_time.tags = {{"seed", std::to_string(seed)}, {"axis", "time"}};
                add(by_time, "bpb", bpb, "bits/byte");
                c.emit(std::move(by_time));
            };
            evaluate(0);
            for (int s = 1; s <= steps; ++s) {
                c.check_cancel();
                const auto t0 = std::chrono::steady_clock::now();
                run.step();
                be.synchronize();
                seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                if (s % every == 0 || s == steps) evaluate(s);
            }
        }
    c.note(fmt::format("{} (bytes as tokens), batch {}×{}, constant learning rate; best lr from {} sweep steps: AdamW "
                       "{:g}, Muon {:g} (its AdamW part at {:g}); {} seed(s)",
                       m.name, batch, seq, sweep_steps, adamw_lr, muon_lr, adamw_lr, seeds.size()));
}

} // namespace crucible::bench
