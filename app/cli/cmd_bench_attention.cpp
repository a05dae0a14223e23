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
#include <vector>

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

// SDPA's backends as the peer names them: PyTorch's own choice, then each forced.
const std::vector<std::string> kSdpaBackends{"default", "cudnn", "flash", "efficient"};

// Adds to `table` the fastest SDPA backend of each shape (forward and
// forward+backward separately) and Crucible's ratio to it, and fills
// `backends` with every backend's TFLOP/s: the peer is the best a PyTorch
// user can get on this GPU, not one backend.
void merge_peer(BenchTable& table, BenchTable& backends, const std::vector<nlohmann::json>& rows)
{
    std::map<std::string, std::map<std::string, nlohmann::json>> by_label;   // label -> backend -> row
    std::string peer_name;
    std::vector<std::string> failures;
    for (const auto& r : rows) {
        if (!r.contains("label")) {
            if (r.contains("error")) table.notes.push_back("peer: " + r["error"].get<std::string>());
            continue;
        }
        const std::string backend = r.value("backend", std::string("flash"));
        by_label[r["label"].get<std::string>()][backend] = r;
        peer_name = r.value("peer", std::string()) + " " + r.value("torch", std::string());
        if (r.contains("error"))
            failures.push_back(r["label"].get<std::string>() + " " + backend + ": " + r["error"].get<std::string>());
    }
    backends.name = "SDPA backends (TFLOP/s)";
    backends.device = table.device;
    for (const char* phase : {"fwd", "f+b"})
        for (const auto& b : kSdpaBackends)
            backends.columns.push_back({std::string(phase == std::string("fwd") ? "fwd_" : "fwdbwd_") + b,
                                        b + " " + phase, 0});

    const size_t fwd = column(table, "fwd_tflops"), fwdbwd = column(table, "fwdbwd_tflops");
    const size_t ours = table.columns.size();
    table.columns.push_back({"peer_fwd_tflops", "SDPA fwd", 0});
    table.columns.push_back({"fwd_vs_peer", "fwd ×", 2});
    table.columns.push_back({"peer_fwdbwd_tflops", "SDPA f+b", 0});
    table.columns.push_back({"fwdbwd_vs_peer", "f+b ×", 2});
    std::map<std::string, int> fastest_fwd, fastest_fb;
    for (auto& row : table.rows) {
        double best_f = NAN, best_fb = NAN;
        std::string best_f_by, best_fb_by;
        BenchRow per_backend{row.label, {}};
        for (const char* key : {"fwd_tflops", "fwdbwd_tflops"}) {
            for (const auto& b : kSdpaBackends) {
                double v = NAN;
                if (auto it = by_label.find(row.label); it != by_label.end())
                    if (auto jt = it->second.find(b); jt != it->second.end()) v = jt->second.value(key, NAN);
                per_backend.values.push_back(v);
                double& best = key == std::string("fwd_tflops") ? best_f : best_fb;
                std::string& by = key == std::string("fwd_tflops") ? best_f_by : best_fb_by;
                if (!std::isnan(v) && (std::isnan(best) || v > best)) {
                    best = v;
                    by = b;
                }
            }
        }
        backends.rows.push_back(std::move(per_backend));
        if (!best_f_by.empty()) ++fastest_fwd[best_f_by];
        if (!best_fb_by.empty()) ++fastest_fb[best_fb_by];
        row.values.resize(ours, NAN);
        row.values.push_back(best_f);
        row.values.push_back(row.values[fwd] / best_f);
        row.values.push_back(best_fb);
        row.values.push_back(row.values[fwdbwd] / best_fb);
    }
    auto tally = [](const std::map<std::string, int>& m) {
        std::string s;
        for (const auto& [b, n] : m) s += (s.empty() ? "" : ", ") + b + " " + std::to_string(n);
        return s.empty() ? std::string("none") : s;
    };
    table.notes.push_back("peer: " + peer_name + ", same GPU, same command; SDPA fwd and f+b are the fastest of its "
                          "backends (default choice, cuDNN, flash, efficient) per row, fastest fwd: " +
                          tally(fastest_fwd) + "; f+b: " + tally(fastest_fb));
    for (const auto& f : failures) backends.notes.push_back("not run: " + f);
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

    BenchTable backends;   // SDPA per backend, when --peer
    if (c.peer) {
        const std::string script = find_peer_script(c.peer_script, "torch_attention_bench.py");
        if (script.empty()) throw Error("cannot find torch_attention_bench.py; pass --peer-script PATH");
        const auto rows = run_peer(script, fmt::format("--head-dims {} --seqs {} --tokens {} --model-dim {} --warmup {} "
                                                       "--repeats {}",
                                                       c.head_dims, c.seqs, c.tokens, c.model_dim, c.warmup, c.repeats));
        merge_peer(table, backends, rows);
    }
    if (c.json) {
        nlohmann::json j = table.to_json();
        if (c.peer) j["sdpa_backends"] = backends.to_json();
        fmt::print("{}\n", j.dump(2));
    } else {
        if (c.peer) fmt::print("{}\n", backends.to_text());
        fmt::print("{}", table.to_text());
    }
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
    cmd->add_flag("--peer", c->peer, "Also run PyTorch SDPA (its default choice and each backend forced) on the same shapes; ratios against the fastest");
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
