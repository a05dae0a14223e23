// Training suite: full optimizer steps per preset (forward, backward,
// clipping, optimizer): tokens/s, MFU against the device's peak, and memory
// by part (weights, gradients, optimizer state, activations as allocated,
// and the device's own count of what the run took); the PyTorch peer on
// the same shapes when asked.
#include "core/bench/hardware_limits.h"
#include "core/bench/peer.h"
#include "core/bench/suite_context.h"
#include "core/bench/train_bench.h"
#include "core/train/memory_estimate.h"

#include <fmt/core.h>

#include <optional>

namespace crucible::bench {

namespace {

// Batch sizes of the reference measurements: small on the CPU, large on a GPU.
int default_batch(const std::string& preset, bool cuda)
{
    if (cuda) return preset == "base" ? 32 : 64;
    if (preset == "tiny" || preset == "nano") return 16;
    if (preset == "micro") return 8;
    if (preset == "small") return 4;
    return 1;
}

} // namespace

void run_train_suite(SuiteContext& c)
{
    const std::vector<std::string> presets = c.words("presets");
    const int steps = c.integer("steps");
    const std::string optimizer = c.text("optimizer");
    const double peak = hardware_limits(c.backend()).peak_tflops;
    size_t index = 0;
    for (const std::string& name : presets) {
        c.step(index++, presets.size(), "training " + name);
        TrainBenchOptions o;
        o.model = bench_model_config(name);
        o.batch = c.integer("batch") > 0 ? c.integer("batch") : default_batch(name, c.cuda());
        o.seq = c.integer("seq") > 0 ? std::min(c.integer("seq"), o.model.seq_len) : o.model.seq_len;
        o.timed_steps = steps;
        o.warmup_steps = c.integer("warmup");
        o.optimizer.type = optimizer_type_from_string(optimizer);
        o.backend = c.backend_options();
        o.before_step = [&c] { c.check_cancel(); };
        const TrainBenchResult r = run_train_bench(o);
        const double params = double(count_params(o.model).total());
        const std::map<std::string, std::string> tags{{"preset", name}};

        Row speed = make_row(c, "crucible", "params", params);
        speed.tags = tags;
        add(speed, "tok_s", r.tokens_per_s, "tok/s");
        add(speed, "ms", r.step.median_ms, "ms");
        add(speed, "ms_min", r.step.min_ms, "ms");
        add(speed, "ms_max", r.step.max_ms, "ms");
        if (peak > 0)
            add(speed, "mfu", 100.0 * r.tokens_per_s * training_flops_per_token(o.model, o.seq) / (peak * 1e12), "%");
        c.emit(std::move(speed));
        const std::pair<const char*, size_t> parts[] = {{"weights", r.weights_bytes},
                                                        {"gradients", r.gradients_bytes},
                                                        {"optimizer", r.optimizer_bytes},
                                                        {"activations", r.activations_bytes},
                                                        {"device", c.cuda() ? r.device_bytes : r.peak_rss_bytes}};
        for (const auto& [part, bytes] : parts) {
            Row m = make_row(c, part, "params", params);
            m.tags = tags;
            add(m, "bytes", double(bytes), "bytes");
            c.emit(std::move(m));
        }

        if (c.request().peer) {
            const std::string script = c.peer_script("torch_train_bench.py");
            if (script.empty()) {
                c.note("PyTorch peer skipped: torch_train_bench.py not found");
                continue;
            }
            c.check_cancel();
            const auto& m = o.model;
            // The peer tries a few settings (threads, eager or compiled): its
            // best is the series, the rest go in a note.
            std::optional<nlohmann::json> best;
            std::string tried;
            for (const auto& p : run_peer(script, fmt::format("--vocab {} --d-model {} --layers {} --heads {} "
                                                              "--kv-heads {} --ff {} --batch {} --seq {} --steps {} "
                                                              "--warmup {} --device {} --optimizer {} {}",
                                                              m.vocab_size, m.d_model, m.n_layers, m.n_heads,
                                                              m.n_kv_heads, m.ff_dim, o.batch, o.seq, steps,
                                                              o.warmup_steps, c.cuda() ? "cuda" : "cpu", optimizer,
                                                              c.cuda() ? "--modes eager,compiled" : "--threads 1,2"))) {
                if (!p.contains("tokens_per_s") || !p["tokens_per_s"].is_number()) continue;
                std::string setting = p.value("peer", std::string("pytorch"));
                if (p.contains("threads") && p["threads"].is_number())
                    setting += fmt::format(" ({} threads)", p["threads"].get<int>());
                tried += fmt::format("{}{} {:.0f} tok/s", tried.empty() ? "" : ", ", setting,
                                     p["tokens_per_s"].get<double>());
                if (!best || p["tokens_per_s"].get<double>() > (*best)["tokens_per_s"].get<double>()) best = p;
                // One thread's share of the wall clock only drops when the
                // machine takes the core away (with more, passive waiting
                // lowers it too): then the peer's rates understate PyTorch.
                if (p.value("threads", nlohmann::json()) == 1 && p.contains("cpu_share") &&
                    p["cpu_share"].is_number() && p["cpu_share"].get<double>() < 0.8)
                    c.note(fmt::format("{}: PyTorch with 1 thread ran only {:.0f}% of the time: the machine was "
                                       "shared, so the peer's rates (and the ratio) are not fair ones; re-run on an "
                                       "idle machine",
                                       name, 100.0 * p["cpu_share"].get<double>()));
            }
            if (best) {
                Row pr = make_row(c, "peer", "params", params);
                pr.tags = tags;
                add(pr, "tok_s", (*best)["tokens_per_s"].get<double>(), "tok/s");
                if ((*best).contains("ms_per_step")) add(pr, "ms", (*best)["ms_per_step"].get<double>(), "ms");
                c.emit(std::move(pr));
                c.note(name + " PyTorch peer: " + tried);
            }
        }
    }
    c.note(fmt::format("median of {} steps, optimizer {}; memory by part as allocated, \"device\" = {}", steps,
                       optimizer,
                       c.cuda() ? "device memory the run took" : "the process's peak resident set (all of it)"));
}

} // namespace crucible::bench
