// crucible-cli bench generate: prefill and decode speed with the KV cache,
// against full recomputation and (with --draft) speculative decoding, at
// several generated lengths; with --peer, the same shapes in PyTorch.
//
// Random weights by default: speed does not depend on what the model learnt,
// and a random model's context is simply extended to prompt + new tokens. A
// trained --run keeps its context (longer lengths are dropped) and can be
// paired with a trained --draft, where acceptance rates mean something.
#include "app/cli/commands.h"
#include "app/cli/peer.h"

#include "core/bench/bench_model.h"
#include "core/bench/generate_bench.h"
#include "core/data/corpus.h"
#include "core/train/load_model.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <cmath>
#include <filesystem>
#include <memory>

namespace crucible::cli {

namespace {

struct GenerateBenchCommand {
    std::vector<std::string> presets{"nano"};
    std::string run, draft, device = "cpu", peer_script;
    std::vector<int> batches{1, 8}, lengths{64, 128, 256, 512};
    int prompt_tokens = 32, new_tokens = 512, repeats = 3, lookahead = 4, threads = 0, decode_burst = 0;
    bool no_recompute = false, no_graphs = false, no_fused = false, peer = false, json = false;
    SamplingConfig sampling{.temperature = 0.0f};
};

std::string join(const std::vector<int>& v)
{
    std::string s;
    for (int x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
}

int run_generate_bench_command(const GenerateBenchCommand& c)
{
    const bool cuda = c.device == "cuda";
    if (!cuda && c.device != "cpu") throw Error("--device must be cpu or cuda");
    BackendOptions bo;
    bo.device = cuda ? DeviceKind::cuda : DeviceKind::cpu;
    bo.threads = c.threads;
    if (const auto problems = c.sampling.problems(); !problems.empty())
        throw Error("invalid sampling settings: " + problems.front());
    if (c.peer && c.sampling.temperature > 0.0f)
        throw Error("the PyTorch peer decodes greedily: drop --temperature to compare with it");
    std::string script;
    if (c.peer) {
        script = find_peer_script(c.peer_script, "torch_generate_bench.py");
        if (script.empty()) throw Error("cannot find torch_generate_bench.py; pass --peer-script PATH");
    }

    // Lengths up to the number of new tokens, which is always measured.
    std::vector<int> lengths;
    for (int l : c.lengths)
        if (l >= 2 && l < c.new_tokens) lengths.push_back(l);
    lengths.push_back(c.new_tokens);
    std::vector<std::string> notes;

    std::vector<BenchModel> targets;
    if (!c.run.empty()) targets.push_back(trained_bench_model(c.run, bo));
    else
        for (const auto& p : c.presets) targets.push_back(random_bench_model(p, c.prompt_tokens + c.new_tokens, 0, nullptr, bo, 1));

    BenchTable table;
    table.name = "bench generate";
    table.columns = {{"prefill_tokens_per_s", "prefill tok/s", 0}, {"kv_tokens_per_s", "KV tok/s", 1},
                     {"recompute_tokens_per_s", "recompute tok/s", 1}, {"kv_speedup", "KV/recompute", 1},
                     {"speculative_tokens_per_s", "spec tok/s", 1}, {"speculative_speedup", "spec/KV", 2},
                     {"peer_tokens_per_s", "peer tok/s", 1}, {"vs_peer", "vs peer", 2}};
    nlohmann::json all = nlohmann::json::array();
    for (BenchModel& target : targets) {
        ParamStore& params = target.store();
        const ModelConfig& mc = params.config();
        // A trained model keeps its context: lengths past it give way to the longest that fits.
        std::vector<int> fit;
        const int room = mc.seq_len - c.prompt_tokens;
        for (int l : lengths)
            if (l <= room) fit.push_back(l);
        if (fit.size() < lengths.size() && room >= 2 && (fit.empty() || fit.back() < room)) fit.push_back(room);
        if (fit.empty())
            throw Error(fmt::format("{}: a prompt of {} tokens leaves no room in its context of {}", target.name,
                                    c.prompt_tokens, mc.seq_len));
        if (fit.back() < lengths.back())
            notes.push_back(fmt::format("{}: context {} tokens, so at most {} new tokens", target.name, mc.seq_len,
                                        fit.back()));
        else if (!target.trained() && mc.seq_len > preset(target.name).seq_len)
            notes.push_back(fmt::format("{}: random weights, context extended to {} tokens", target.name, mc.seq_len));

        // A trained model reads text: prompts are windows of the held-out
        // tail of the embedded corpus, in its own tokenizer.
        std::vector<int32_t> prompt_text;
        if (target.trained()) {
            const Corpus corpus = Corpus::embedded_default();   // holds the text the reference below reads
            const std::string& text = corpus.documents().front().text;
            prompt_text = target.loaded->tokenizer.encode(text.substr(text.size() - text.size() / 10));
            notes.push_back(target.name + ": prompts from the last 10% of the embedded Tiny Shakespeare");
        }

        BenchModel draft;
        if (!c.draft.empty()) {
            draft = std::filesystem::exists(c.draft)
                        ? trained_bench_model(c.draft, bo)
                        : random_bench_model(c.draft, std::max(mc.seq_len, c.prompt_tokens + c.new_tokens),
                                       mc.vocab_size, &params.backend(), bo, 2);
            if (!draft.trained())
                notes.push_back("draft " + c.draft + ": random weights (random tied-embedding models mostly repeat "
                                "their input, so they agree more than trained models do)");
        }

        for (int batch : c.batches) {
            GenerateBenchOptions o;
            o.prompt_tokens = c.prompt_tokens;
            o.lengths = fit;
            o.batch = batch;
            o.repeats = c.repeats;
            o.recompute = !c.no_recompute;
            o.lookahead = c.lookahead;
            o.speedups.graphs = !c.no_graphs;
            o.speedups.fused_kernels = !c.no_fused;
            o.speedups.decode_burst = c.decode_burst;
            o.sampling = c.sampling;
            o.prompt_text = prompt_text;
            // A run takes a while on a CPU, most of it in the recompute
            // baseline: say what is being measured while it is.
            fmt::print(stderr, "measuring {} batch {}: KV-cached decoding ({} runs){}{}\n", target.name, batch, c.repeats,
                       c.draft.empty() ? "" : ", speculative",
                       o.recompute ? ", full recompute once (slow by design; --no-recompute skips it)" : "");
            const GenerateBenchResult r = run_generate_bench(params, c.draft.empty() ? nullptr : &draft.store(), o);
            table.device = r.device;

            std::vector<nlohmann::json> peers;
            if (c.peer) {
                const std::string args = fmt::format(
                    "--vocab {} --d-model {} --layers {} --heads {} --kv-heads {} --head-dim {} --ff {} --prompt {} "
                    "--lengths {} --batch {} --repeats {} --device {}{}",
                    mc.vocab_size, mc.d_model, mc.n_layers, mc.n_heads, mc.n_kv_heads, mc.resolved_head_dim(), mc.ff_dim,
                    c.prompt_tokens, join(fit), batch, c.repeats, c.device,
                    c.threads > 0 ? fmt::format(" --threads {}", c.threads) : std::string());
                peers = run_peer(script, args);
            }
            auto peer_rate = [&](const nlohmann::json& p, int length) -> double {
                for (const auto& pt : p.value("points", nlohmann::json::array()))
                    if (pt.value("length", 0) == length) return pt.value("decode_tokens_per_s", double(NAN));
                return NAN;
            };

            for (size_t i = 0; i < r.points.size(); ++i) {
                const GenerateBenchPoint& pt = r.points[i];
                double best_peer = NAN;
                for (const auto& p : peers) {
                    const double v = peer_rate(p, pt.length);
                    if (!std::isnan(v) && !(v <= best_peer)) best_peer = v;
                }
                const bool spec = pt.speculative_tokens_per_s > 0, slow = pt.recompute_tokens_per_s > 0;
                table.rows.push_back(
                    {fmt::format("{} B{} L{}", target.name, batch, pt.length),
                     {i == 0 ? r.prefill_tokens_per_s : NAN, pt.kv_tokens_per_s, slow ? pt.recompute_tokens_per_s : NAN,
                      slow ? pt.kv_tokens_per_s / pt.recompute_tokens_per_s : NAN,
                      spec ? pt.speculative_tokens_per_s : NAN, spec ? pt.speculative_tokens_per_s / pt.kv_tokens_per_s : NAN,
                      best_peer, std::isnan(best_peer) ? NAN : pt.kv_tokens_per_s / best_peer}});
            }
            for (const auto& p : peers) {
                std::string label = "  " + p.value("peer", std::string("pytorch"));
                if (p.contains("mode")) label += " (" + p.value("mode", std::string()) + ")";
                table.rows.push_back({label + fmt::format(" B{} L{}", batch, fit.back()),
                                      {p.value("prefill_tokens_per_s", NAN), peer_rate(p, fit.back()), NAN, NAN, NAN,
                                       NAN, NAN, NAN}});
            }
            notes.push_back(fmt::format("{} B{}: {:.0f}% of the KV decode time in the model, the rest on the host",
                                        target.name, batch, 100.0 * r.decode_model_share));
            if (!c.draft.empty())
                notes.push_back(fmt::format("{} B{}: draft acceptance {:.0f}% (lookahead {})", target.name, batch,
                                            100.0 * r.acceptance_rate, c.lookahead));
            nlohmann::json j = r.to_json();
            j["model"] = target.name;
            j["peers"] = peers;
            all.push_back(j);
        }
    }
    const SamplingConfig& sc = c.sampling;
    const std::string decoding =
        sc.temperature == 0.0f
            ? std::string("greedy")
            : fmt::format("sampled at temperature {:g} (top-k {}, top-p {:g}, min-p {:g}, repetition penalty {:g}; "
                          "recompute greedy)",
                          sc.temperature, sc.top_k, sc.top_p, sc.min_p, sc.repetition_penalty);
    notes.push_back(fmt::format("{}; prompt {} tokens; decode tok/s at length L = (L-1)·batch / time from the first "
                                "to the L-th token; KV: median of {} runs, recompute: one run",
                                decoding, c.prompt_tokens, c.repeats));
    table.notes = notes;
    if (c.json) fmt::print("{}\n", all.dump(2));
    else fmt::print("{}", table.to_text());
    return 0;
}

} // namespace

void add_bench_generate_command(CLI::App& bench, int& exit_code)
{
    auto c = std::make_shared<GenerateBenchCommand>();
    auto* cmd = bench.add_subcommand("generate", "Prefill and decode tokens/s: KV cache vs recompute vs speculative");
    cmd->add_option("--preset", c->presets, "Presets to measure with random weights (repeatable)")->capture_default_str();
    cmd->add_option("--run", c->run, "Measure this trained run instead of presets");
    cmd->add_option("--draft", c->draft, "Draft for speculative decoding: a run directory or a preset name");
    cmd->add_option("--lookahead", c->lookahead, "Draft tokens per speculative step")->capture_default_str();
    cmd->add_option("--batch", c->batches, "Batch sizes (repeatable)")->capture_default_str();
    cmd->add_option("--prompt-tokens", c->prompt_tokens, "Prompt length")->capture_default_str();
    cmd->add_option("--new-tokens", c->new_tokens, "Tokens generated per sequence")->capture_default_str();
    cmd->add_option("--lengths", c->lengths, "Generated lengths at which rates are read (repeatable)")
        ->capture_default_str();
    cmd->add_option("--repeats", c->repeats, "KV-cached runs per measurement (median)")->capture_default_str();
    cmd->add_flag("--no-recompute", c->no_recompute, "Skip the (slow) full-recompute baseline");
    cmd->add_flag("--no-graphs", c->no_graphs, "Launch decode steps op by op instead of replaying CUDA graphs");
    cmd->add_flag("--no-fused", c->no_fused,
                  "Run decode steps through the separate ops instead of the fused decode kernels");
    cmd->add_option("--temperature", c->sampling.temperature,
                    "Sample at this temperature instead of greedy decoding (the rates then include sampling on the host)")
        ->capture_default_str();
    cmd->add_option("--top-k", c->sampling.top_k, "With --temperature: keep the k most likely tokens");
    cmd->add_option("--top-p", c->sampling.top_p, "With --temperature: keep the smallest set with mass ≥ p");
    cmd->add_option("--min-p", c->sampling.min_p, "With --temperature: drop tokens below min-p × the top probability");
    cmd->add_option("--repetition-penalty", c->sampling.repetition_penalty, "Penalise tokens already seen (1 = off)");
    cmd->add_option("--decode-burst", c->decode_burst,
                    "Greedy decode steps per device submission (0: automatic, 8 on a GPU; 1: no bursts)")
        ->check(CLI::Range(0, int(CachedForward::kMaxDecodeBurst)))
        ->capture_default_str();
    cmd->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    cmd->add_flag("--peer", c->peer, "Also run the same shapes in PyTorch (static KV cache) and print the ratio");
    cmd->add_option("--peer-script", c->peer_script, "Path to torch_generate_bench.py");
    cmd->add_flag("--json", c->json, "Print JSON (per model and batch, rates at every length) instead of a table");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_generate_bench_command(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
