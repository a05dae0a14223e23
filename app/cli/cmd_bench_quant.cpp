// crucible-cli bench quant: what quantizing a trained model's projection
// weights costs, scheme by scheme (core/quant/weight_quant.h): the mean
// squared weight error, the bits per weight stored, and the bits per byte of
// the whole model with those weights on a text, against the f32 model.
// Embeddings, norms and the head stay in f32, as in QLoRA. Without --text it
// is the quant suite (core/bench): the given run, or a byte-level model
// trained on the spot, on the embedded text, with --out and --size.
#include "app/cli/bench_sink.h"
#include "app/cli/commands.h"

#include "core/data/corpus.h"
#include "core/io/file_util.h"
#include "core/model/transformer.h"
#include "core/bench/weight_quant_bench.h"
#include "core/train/evaluate.h"
#include "core/train/load_model.h"

#include <fmt/core.h>

namespace crucible::cli {

namespace {

struct QuantBenchCommand {
    std::string run, text, out, size = "standard", device = "cpu";
    int batch = 8, threads = 0, max_tokens = 65536;
    bool json = false;
};

int run_quant_bench(const QuantBenchCommand& c)
{
    BackendOptions bo;
    bo.threads = c.threads;
    LoadedModel m = load_model(c.run, bo);
    const std::string bytes = read_file(c.text);
    std::string why;
    if (!looks_like_text(bytes, &why)) throw Error(c.text + ": " + why);
    std::vector<int32_t> ids = m.tokenizer.encode(bytes);
    if (c.max_tokens > 0 && int64_t(ids.size()) > c.max_tokens) ids.resize(size_t(c.max_tokens));
    std::vector<int32_t> lengths(size_t(m.tokenizer.vocab_size()));
    for (int32_t i = 0; i < m.tokenizer.vocab_size(); ++i) lengths[size_t(i)] = int32_t(m.tokenizer.token_bytes(i).size());
    const int seq = m.config.seq_len;
    if (int64_t(ids.size()) < 2) throw Error(c.text + " is too short to evaluate on");

    Transformer model(*m.params, c.batch, seq, false);
    auto bits_per_byte = [&] { return evaluate_token_stream(model, ids, lengths, c.batch, seq).bits_per_byte; };
    const double f32_bpb = bits_per_byte();
    nlohmann::json rows = nlohmann::json::array();
    if (!c.json)
        fmt::print("{} on {} ({} tokens); f32: {:.4f} bits/byte\n{:<14} {:>10} {:>14} {:>11} {:>9}\n", c.run, c.text,
                   ids.size(), f32_bpb, "scheme", "bits/wt", "weight MSE", "bits/byte", "vs f32");
    measure_weight_quant(*m.params, bits_per_byte, [&](const WeightQuantResult& r) {
        const double bpb = r.bits_per_byte, mse = r.weight_mse, bpw = r.bits_per_weight;
        rows.push_back({{"scheme", to_string(r.scheme)}, {"bits_per_weight", bpw}, {"weight_mse", mse},
                        {"bits_per_byte", bpb}, {"delta_bits_per_byte", bpb - f32_bpb}});
        if (!c.json)
            fmt::print("{:<14} {:>10.3f} {:>14.3e} {:>11.4f} {:>+9.4f}\n", to_string(r.scheme), bpw, mse, bpb, bpb - f32_bpb);
    });
    if (c.json)
        fmt::print("{}\n", nlohmann::json{{"run", c.run}, {"text", c.text}, {"tokens", ids.size()},
                                          {"f32_bits_per_byte", f32_bpb}, {"schemes", rows}}
                               .dump(2));
    return 0;
}

int run_quant_suite(const QuantBenchCommand& c)
{
    SuiteRunOptions o;
    if (c.device == "cuda") o.request.device = DeviceKind::cuda;
    else if (c.device != "cpu") throw Error("--device must be cpu or cuda");
    const auto size = bench::size_class_from_string(c.size);
    if (!size) throw Error("--size must be standard or tiny, got \"" + c.size + "\"");
    o.request.size = *size;
    o.request.threads = c.threads;
    if (!c.run.empty()) o.request.options["run"] = c.run;
    o.out = c.out;
    o.json = c.json;
    return run_suites({"quant"}, o);
}

} // namespace

void add_bench_quant_command(CLI::App& bench, int& exit_code)
{
    auto c = std::make_shared<QuantBenchCommand>();
    auto* cmd = bench.add_subcommand("quant", "Weight quantization schemes (NF4, int4, int8, bf16) on a trained model: "
                                              "weight error, bits per weight, bits per byte");
    cmd->add_option("--run", c->run, "Run, checkpoint or model folder (without it: a byte-level model trained here)");
    cmd->add_option("--text", c->text, "Text file to evaluate on (without it: the quant suite, on the embedded text)");
    cmd->add_option("--out", c->out, "Without --text: also write the results to this file (JSON lines)");
    cmd->add_option("--size", c->size, "Without --text: standard or tiny")->capture_default_str();
    cmd->add_option("--device", c->device, "Without --text: cpu or cuda")->capture_default_str();
    cmd->add_option("--max-tokens", c->max_tokens, "Evaluate on at most this many tokens (0 = all)")->capture_default_str();
    cmd->add_option("--batch", c->batch, "Sequences per batch")->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    cmd->add_flag("--json", c->json, "Print JSON instead of a table");
    cmd->callback([c, &exit_code] {
        try {
            if (c->text.empty()) exit_code = run_quant_suite(*c);
            else if (c->run.empty()) throw Error("--text needs --run: the model to evaluate");
            else exit_code = run_quant_bench(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
