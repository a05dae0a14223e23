// crucible-cli bench attention: flash vs naive attention, and vs PyTorch SDPA
// measured on the same GPU in the same command (--peer).
#include "app/cli/commands.h"
#include "app/cli/peer.h"

#include "core/bench/attention_bench.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <map>
#include <memory>
#include <sstream>

namespace crucible::cli {

namespace {

struct AttentionBenchCommand {
    std::string device = "cuda", head_dims = "64,128", seqs = "1024,2048,4096,8192", peer_script;
    int64_t tokens = 32768, model_dim = 2048;
    int warmup = 3, repeats = 10;
    bool no_naive = false, forward_only = false, peer = false, json = false;
};

std::vector<int> parse_list(const std::string& s, const char* what)
{
    std::vector<int> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        try {
            out.push_back(std::stoi(item));
        } catch (...) {
            throw Error(std::string(what) + " must be a comma-separated list of integers, got \"" + s + "\"");
        }
    }
    if (out.empty()) throw Error(std::string(what) + " is empty");
    return out;
}

size_t column(const BenchTable& t, const std::string& key)
{
    for (size_t i = 0; i < t.columns.size(); ++i)
        if (t.columns[i].key == key) return i;
    throw Error("attention benchmark table has no column " + key);
}

int run(const AttentionBenchCommand& c)
{
    BackendOptions bo;
    if (c.device == "cuda") bo.device = DeviceKind::cuda;
    else if (c.device != "cpu") throw Error("--device must be cpu or cuda");
    auto backend = make_backend(bo);
    AttentionBenchOptions o;
    o.head_dims = parse_list(c.head_dims, "--head-dims");
    o.seq_lens = parse_list(c.seqs, "--seqs");
    o.tokens = c.tokens;
    o.model_dim = c.model_dim;
    o.warmup = c.warmup;
    o.repeats = c.repeats;
    o.naive = !c.no_naive;
    o.backward = !c.forward_only;
    o.on_row = [](const std::string& row, size_t index, size_t rows) {
        fmt::print(stderr, "measuring {} ({} of {})\n", row, index + 1, rows);
    };
    BenchTable table = run_attention_bench(*backend, o);

    if (c.peer) {
        const std::string script = find_peer_script(c.peer_script, "torch_attention_bench.py");
        if (script.empty()) throw Error("cannot find torch_attention_bench.py; pass --peer-script PATH");
        const auto rows = run_peer(script, fmt::format("--head-dims {} --seqs {} --tokens {} --model-dim {} --warmup {} "
                                                       "--repeats {}",
                                                       c.head_dims, c.seqs, c.tokens, c.model_dim, c.warmup, c.repeats));
        std::map<std::string, nlohmann::json> by_label;
        for (const auto& r : rows)
            if (r.contains("label")) by_label[r["label"].get<std::string>()] = r;
        const size_t fwd = column(table, "fwd_tflops"), fwdbwd = column(table, "fwdbwd_tflops");
        table.columns.push_back({"peer_fwd_tflops", "SDPA fwd", 0});
        table.columns.push_back({"fwd_vs_peer", "fwd ×", 2});
        table.columns.push_back({"peer_fwdbwd_tflops", "SDPA f+b", 0});
        table.columns.push_back({"fwdbwd_vs_peer", "f+b ×", 2});
        std::string peer_name;
        for (auto& row : table.rows) {
            double pf = NAN, pfb = NAN;
            if (auto it = by_label.find(row.label); it != by_label.end()) {
                pf = it->second.value("fwd_tflops", NAN);
                pfb = it->second.value("fwdbwd_tflops", NAN);
                peer_name = it->second.value("peer", std::string()) + " " + it->second.value("torch", std::string());
            }
            row.values.resize(table.columns.size() - 4, NAN);
            row.values.push_back(pf);
            row.values.push_back(row.values[fwd] / pf);
            row.values.push_back(pfb);
            row.values.push_back(row.values[fwdbwd] / pfb);
        }
        table.notes.push_back("peer: " + peer_name + ", same GPU, same command");
    }
    if (c.json) fmt::print("{}\n", table.to_json().dump(2));
    else fmt::print("{}", table.to_text());
    return 0;
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
