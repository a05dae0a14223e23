// crucible-cli bench: speed measured for real, with a peer in the same run.
// `bench train` is the training suite (core/bench) printed as one line per
// preset (and one per peer); the other benchmarks register themselves below.
#include "app/cli/bench_sink.h"
#include "app/cli/commands.h"

#include "core/train/metrics.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <memory>

namespace crucible::cli {

namespace {

struct TrainBenchCommand {
    std::vector<std::string> presets{"nano"};
    std::string device = "cpu", optimizer = "adamw", peer_script, out;
    int batch = 0, seq = 0, steps = 10, warmup = 3, threads = 0;
    bool peer = false, json = false;
};

void print_table(const TrainBenchCommand& c, const TerminalSink& sink)
{
    const bool cuda = c.device == "cuda";
    BenchTable table;
    table.name = "bench train";
    table.device = sink.device;
    const MetricInfo& speed = metric_info(Metric::tokens_per_s);
    const MetricInfo& mfu = metric_info(Metric::mfu);
    const MetricInfo& memory = metric_info(Metric::memory_bytes);
    table.columns = {metric_column(speed),    {"ms_per_step", "ms/step", 2}, {"ms_min", "min", 2},
                     {"ms_max", "max", 2},    metric_column(memory),         metric_column(mfu),
                     {"speedup", "vs peer", 2}};
    nlohmann::json all = nlohmann::json::array();
    for (const std::string& name : c.presets) {
        const bench::Row *ours = nullptr, *peer = nullptr, *device = nullptr;
        for (const auto& r : sink.rows)
            if (r.tag("preset") == name) {
                if (r.series == "crucible") ours = &r;
                else if (r.series == "peer") peer = &r;
                else if (r.series == "device") device = &r;
            }
        if (!ours) continue;
        auto get = [](const bench::Row* r, const char* key) { return r ? r->get(key).value_or(NAN) : NAN; };
        const double tps = get(ours, "tok_s"), peer_tps = get(peer, "tok_s");
        table.rows.push_back({fmt::format("{} crucible", name),
                              {tps, get(ours, "ms"), get(ours, "ms_min"), get(ours, "ms_max"),
                               memory.shown(get(device, "bytes")), get(ours, "mfu"), tps / peer_tps}});
        if (peer) table.rows.push_back({"  pytorch (best)", {peer_tps, get(peer, "ms"), NAN, NAN, NAN, NAN, NAN}});
        nlohmann::json j{{"preset", name}, {"device", sink.device}, {"tokens_per_s", tps}, {"ms_per_step", get(ours, "ms")},
                         {"ms_min", get(ours, "ms_min")}, {"ms_max", get(ours, "ms_max")},
                         {"mfu", std::isnan(get(ours, "mfu")) ? 0.0 : get(ours, "mfu") / 100.0},
                         {"speedup_vs_best_peer", std::isnan(peer_tps) ? 0.0 : tps / peer_tps}};
        for (const auto& r : sink.rows)
            if (r.tag("preset") == name && r.get("bytes")) j[r.series + "_bytes"] = *r.get("bytes");
        all.push_back(j);
    }
    table.notes = sink.notes;
    table.notes.push_back(fmt::format("memory = {}", cuda ? "device memory taken (PyTorch: max allocated)"
                                                          : "process peak RSS: the whole process, libraries and data included"));
    if (c.json) fmt::print("{}\n", all.dump(2));
    else fmt::print("{}", table.to_text());
}

int run_train_bench_command(const TrainBenchCommand& c)
{
    SuiteRunOptions o;
    if (c.device == "cuda") o.request.device = DeviceKind::cuda;
    else if (c.device != "cpu") throw Error("--device must be cpu or cuda");
    o.request.threads = c.threads;
    o.request.peer = c.peer;
    std::string presets;
    for (const auto& p : c.presets) presets += (presets.empty() ? "" : ",") + p;
    o.request.options = {{"presets", presets},          {"batch", std::to_string(c.batch)},
                         {"seq", std::to_string(c.seq)}, {"steps", std::to_string(c.steps)},
                         {"warmup", std::to_string(c.warmup)}, {"optimizer", c.optimizer}};
    if (!c.peer_script.empty()) {
        if (!std::filesystem::exists(c.peer_script)) throw Error("cannot find the peer script " + c.peer_script);
        o.request.peer_script_dir = std::filesystem::path(c.peer_script).parent_path().string();
    }
    o.out = c.out;
    return run_suites({"train"}, o, [&c](const std::string&, const TerminalSink& sink) { print_table(c, sink); });
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
    train->add_option("--out", c->out, "Also write the results to this file (JSON lines, with the machine's facts)");
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
    add_bench_suite_commands(*bench, exit_code);
}

} // namespace crucible::cli
