// crucible-cli bench: speed measured for real, with a peer in the same run.
#include "app/cli/commands.h"
#include "app/cli/peer.h"

#include "core/bench/train_bench.h"
#include "core/train/memory_estimate.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <memory>

namespace crucible::cli {

namespace {

struct TrainBenchCommand {
    std::vector<std::string> presets{"nano"};
    std::string device = "cpu", optimizer = "adamw", peer_script;
    int batch = 0, seq = 0, steps = 10, warmup = 3, threads = 0;
    bool peer = false, json = false;
};

// Batch sizes of the reference measurements: small on the CPU, large on a GPU.
int default_batch(const std::string& preset, bool cuda)
{
    if (cuda) return preset == "base" ? 32 : 64;
    if (preset == "nano") return 16;
    if (preset == "micro") return 8;
    if (preset == "small") return 4;
    return 1;
}

int run_train_bench_command(const TrainBenchCommand& c)
{
    const bool cuda = c.device == "cuda";
    if (!cuda && c.device != "cpu") throw Error("--device must be cpu or cuda");
    std::string script;
    if (c.peer) {
        script = find_peer_script(c.peer_script, "torch_train_bench.py");
        if (script.empty()) throw Error("cannot find torch_train_bench.py; pass --peer-script PATH");
    }
    BenchTable table;
    table.name = "bench train";
    const MetricInfo& speed = metric_info(Metric::tokens_per_s);
    const MetricInfo& mfu = metric_info(Metric::mfu);
    const MetricInfo& memory = metric_info(Metric::memory_bytes);
    table.columns = {metric_column(speed),    {"ms_per_step", "ms/step", 2}, {"ms_min", "min", 2},
                     {"ms_max", "max", 2},    metric_column(memory),         metric_column(mfu),
                     {"speedup", "vs peer", 2}};
    nlohmann::json all = nlohmann::json::array();
    for (const std::string& name : c.presets) {
        TrainBenchOptions o;
        o.model = preset(name);
        o.batch = c.batch > 0 ? c.batch : default_batch(name, cuda);
        o.seq = c.seq > 0 ? c.seq : o.model.seq_len;
        o.timed_steps = c.steps;
        o.warmup_steps = c.warmup;
        o.optimizer.type = optimizer_type_from_string(c.optimizer);
        o.backend.device = cuda ? DeviceKind::cuda : DeviceKind::cpu;
        o.backend.threads = c.threads;
        const TrainBenchResult r = run_train_bench(o);
        table.device = r.device;
        const std::string shape = fmt::format("{} B{}×T{}", name, o.batch, o.seq);
        const double memory_shown = memory.shown(double(cuda ? r.device_bytes : r.peak_rss_bytes));

        double best_peer = 0.0;
        std::vector<BenchRow> peer_rows;
        if (c.peer) {
            const std::string args = fmt::format(
                "--vocab {} --d-model {} --layers {} --heads {} --kv-heads {} --ff {} --batch {} --seq {} "
                "--steps {} --warmup {} --device {} --optimizer {} {}",
                o.model.vocab_size, o.model.d_model, o.model.n_layers, o.model.n_heads, o.model.n_kv_heads,
                o.model.ff_dim, o.batch, o.seq, c.steps, c.warmup, c.device, c.optimizer,
                cuda ? "--modes eager,compiled" : "--threads 1,2");
            for (const auto& p : run_peer(script, args)) {
                const double tps = p.value("tokens_per_s", 0.0);
                best_peer = std::max(best_peer, tps);
                std::string label = "  " + p.value("peer", std::string("pytorch"));
                if (!p["threads"].is_null()) label += fmt::format(" ({} thr)", p["threads"].get<int>());
                peer_rows.push_back({label, {tps, p.value("ms_per_step", NAN), p.value("ms_min", NAN),
                                             p.value("ms_max", NAN), memory.shown(p.value("peak_bytes", 0.0)), NAN, NAN}});
                // One thread's share of the wall clock only drops when the machine
                // takes the core away (with more, passive waiting lowers it too).
                if (p.value("threads", nlohmann::json()) == 1 && p.contains("cpu_share") &&
                    p["cpu_share"].is_number() && p["cpu_share"].get<double>() < 0.8)
                    table.notes.push_back(fmt::format(
                        "{}: PyTorch with 1 thread ran only {:.0f}% of the time: the machine was shared, so the "
                        "peer's rates (and the ratio) are not fair ones; re-run on an idle machine",
                        name, 100.0 * p["cpu_share"].get<double>()));
                all.push_back(p);
            }
        }
        table.rows.push_back({shape + " crucible", {r.tokens_per_s, r.step.median_ms, r.step.min_ms, r.step.max_ms,
                                                    memory_shown, r.mfu > 0 ? mfu.shown(r.mfu) : NAN,
                                                    best_peer > 0 ? r.tokens_per_s / best_peer : NAN}});
        for (auto& row : peer_rows) table.rows.push_back(row);
        all.push_back({{"preset", name}, {"batch", o.batch}, {"seq", o.seq}, {"device", r.device},
                       {"tokens_per_s", r.tokens_per_s}, {"ms_per_step", r.step.median_ms},
                       {"ms_min", r.step.min_ms}, {"ms_max", r.step.max_ms}, {"engine_bytes", r.engine_bytes}, {"device_bytes", r.device_bytes},
                       {"peak_rss_bytes", r.peak_rss_bytes}, {"mfu", r.mfu},
                       {"speedup_vs_best_peer", best_peer > 0 ? r.tokens_per_s / best_peer : 0.0}});
    }
    table.notes.push_back(fmt::format("median of {} steps after {} warm-up steps; optimizer {}; memory = {}", c.steps,
                                      c.warmup, c.optimizer, cuda ? "device memory taken (PyTorch: max allocated)"
                                           : "process peak RSS: the whole process, libraries and data included"));
    if (c.json) fmt::print("{}\n", all.dump(2));
    else fmt::print("{}", table.to_text());
    return 0;
}

} // namespace

void add_bench_command(CLI::App& app, int& exit_code)
{
    auto* bench = app.add_subcommand("bench", "Benchmarks: training throughput, attention, ...");
    bench->require_subcommand(1);

    auto c = std::make_shared<TrainBenchCommand>();
    auto* train = bench->add_subcommand("train", "Tokens/s, ms/step and memory of full training steps");
    train->add_option("--preset", c->presets, "Presets to measure (repeatable)")->capture_default_str();
    train->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    train->add_option("--batch", c->batch, "Sequences per step (default: per preset and device)");
    train->add_option("--seq", c->seq, "Sequence length (default: the preset's)");
    train->add_option("--steps", c->steps, "Timed steps")->capture_default_str();
    train->add_option("--warmup", c->warmup, "Warm-up steps")->capture_default_str();
    train->add_option("--optimizer", c->optimizer, "adamw or muon")->capture_default_str();
    train->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    train->add_flag("--peer", c->peer, "Also run the same model in PyTorch and print the ratio");
    train->add_option("--peer-script", c->peer_script, "Path to torch_train_bench.py");
    train->add_flag("--json", c->json, "Print JSON instead of a table");
    train->callback([c, &exit_code] {
        try {
            exit_code = run_train_bench_command(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });

    add_bench_generate_command(*bench, exit_code);
#ifdef CRUCIBLE_HAS_SERVER
    add_bench_serve_command(*bench, exit_code);
#endif
    add_bench_attention_command(*bench, exit_code);
    add_bench_quant_command(*bench, exit_code);
}

} // namespace crucible::cli
