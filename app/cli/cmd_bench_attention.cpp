// crucible-cli bench attention: flash vs naive attention, and vs PyTorch SDPA
// measured on the same GPU in the same command (--peer). The measurement is
// the attention suite (core/bench); this prints its rows as one table line
// per head dim and length.
#include "app/cli/bench_sink.h"
#include "app/cli/commands.h"

#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <memory>

namespace crucible::cli {

namespace {

struct AttentionBenchCommand {
    std::string device = "cuda", head_dims = "64,128", seqs = "1024,2048,4096,8192", peer_script, out;
    int64_t tokens = 32768, model_dim = 2048;
    int warmup = 3, repeats = 10;
    bool no_naive = false, forward_only = false, peer = false, json = false;
};

double value(const std::vector<bench::Row>& rows, const std::string& series, const std::string& pass, int D, int T,
             const char* key)
{
    for (const auto& r : rows)
        if (r.series == series && r.tag("pass") == pass && r.tag("D") == std::to_string(D) && r.x == T)
            if (auto v = r.get(key)) return *v;
    return NAN;
}

void print_table(const AttentionBenchCommand& c, const TerminalSink& sink)
{
    BenchTable table;
    table.name = "bench attention";
    table.device = sink.device;
    table.columns = {{"head_dim", "D", 0},          {"seq", "T", 0},
                     {"batch", "B", 0},             {"heads", "H", 0},
                     {"fwd_ms", "fwd ms", 3},       {"fwd_tflops", "fwd TFLOP/s", 3},
                     {"fwdbwd_ms", "f+b ms", 3},    {"fwdbwd_tflops", "f+b TFLOP/s", 3},
                     {"naive_fwd_tflops", "naive fwd", 3}, {"naive_fwdbwd_tflops", "naive f+b", 3},
                     {"speedup", "flash/naive", 1}, {"peak_mb", "flash MB", 1}, {"naive_peak_mb", "naive MB", 1}};
    if (c.peer)
        for (BenchColumn col : std::initializer_list<BenchColumn>{{"peer_fwd_tflops", "SDPA fwd", 0}, {"fwd_vs_peer", "fwd ×", 2},
                                    {"peer_fwdbwd_tflops", "SDPA f+b", 0}, {"fwdbwd_vs_peer", "f+b ×", 2}})
            table.columns.push_back(col);
    std::vector<int> dims, seqs;
    for (const auto& r : sink.rows) {
        const int D = std::stoi(r.tag("D")), T = int(r.x);
        if (std::find(dims.begin(), dims.end(), D) == dims.end()) dims.push_back(D);
        if (std::find(seqs.begin(), seqs.end(), T) == seqs.end()) seqs.push_back(T);
    }
    for (int D : dims)
        for (int T : seqs) {
            const auto& rows = sink.rows;
            const double f = value(rows, "flash", "fwd", D, T, "ms"), fb = value(rows, "flash", "fwd+bwd", D, T, "ms");
            const double nfb_ms = value(rows, "naive", "fwd+bwd", D, T, "ms"), nf_ms = value(rows, "naive", "fwd", D, T, "ms");
            const double speedup = std::isnan(nfb_ms) ? nf_ms / f : nfb_ms / fb;
            std::vector<double> v{double(D), double(T), double(std::max<int64_t>(1, c.tokens / T)),
                                  double(std::max<int64_t>(1, c.model_dim / D)), f,
                                  value(rows, "flash", "fwd", D, T, "tflops"), fb,
                                  value(rows, "flash", "fwd+bwd", D, T, "tflops"),
                                  value(rows, "naive", "fwd", D, T, "tflops"),
                                  value(rows, "naive", "fwd+bwd", D, T, "tflops"), speedup,
                                  value(rows, "flash", "fwd", D, T, "peak_bytes") / 1e6,
                                  value(rows, "naive", "fwd", D, T, "peak_bytes") / 1e6};
            if (c.peer) {
                const double pf = value(rows, "peer", "fwd", D, T, "tflops"), pfb = value(rows, "peer", "fwd+bwd", D, T, "tflops");
                v.insert(v.end(), {pf, v[5] / pf, pfb, v[7] / pfb});
            }
            table.rows.push_back({fmt::format("D{} T{}", D, T), v});
        }
    table.notes = sink.notes;
    if (c.json) fmt::print("{}\n", table.to_json().dump(2));
    else fmt::print("{}", table.to_text());
}

int run(const AttentionBenchCommand& c)
{
    SuiteRunOptions o;
    if (c.device == "cuda") o.request.device = DeviceKind::cuda;
    else if (c.device != "cpu") throw Error("--device must be cpu or cuda");
    o.request.options = {{"head_dims", c.head_dims}, {"seqs", c.seqs}, {"tokens", std::to_string(c.tokens)},
                         {"model_dim", std::to_string(c.model_dim)}, {"repeats", std::to_string(c.repeats)},
                         {"warmup", std::to_string(c.warmup)}, {"naive", c.no_naive ? "0" : "1"},
                         {"backward", c.forward_only ? "0" : "1"}};
    o.request.peer = c.peer;
    if (!c.peer_script.empty()) {
        if (!std::filesystem::exists(c.peer_script)) throw Error("cannot find the peer script " + c.peer_script);
        o.request.peer_script_dir = std::filesystem::path(c.peer_script).parent_path().string();
    }
    o.out = c.out;
    return run_suites({"attention"}, o, [&c](const std::string&, const TerminalSink& sink) { print_table(c, sink); });
}

} // namespace

void add_bench_attention_command(CLI::App& bench, int& exit_code)
{
    auto c = std::make_shared<AttentionBenchCommand>();
    auto* cmd = bench.add_subcommand("attention", "Causal attention TFLOP/s: flash vs naive (and vs PyTorch SDPA)");
    cmd->add_option("--device", c->device, "cuda or cpu")->capture_default_str();
    cmd->add_option("--head-dims", c->head_dims, "Head dimensions")->capture_default_str();
    cmd->add_option("--seqs", c->seqs, "Sequence lengths")->capture_default_str();
    cmd->add_option("--tokens", c->tokens, "B·T per call")->capture_default_str();
    cmd->add_option("--model-dim", c->model_dim, "H = model_dim / head_dim")->capture_default_str();
    cmd->add_option("--warmup", c->warmup, "Warm-up calls")->capture_default_str();
    cmd->add_option("--repeats", c->repeats, "Timed samples")->capture_default_str();
    cmd->add_flag("--no-naive", c->no_naive, "Skip the naive (T×T scores) kernels");
    cmd->add_flag("--forward-only", c->forward_only, "Skip forward+backward");
    cmd->add_flag("--peer", c->peer, "Also run PyTorch SDPA (flash) on the same shapes and print ratios");
    cmd->add_option("--peer-script", c->peer_script, "Path to torch_attention_bench.py");
    cmd->add_option("--out", c->out, "Also write the results to this file (JSON lines, with the machine's facts)");
    cmd->add_flag("--json", c->json, "Print JSON instead of a table");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
