// Quantization suite: what storing the projection weights in each scheme
// (core/quant/weight_quant.h) costs: bits per weight, the weights' mean
// squared error and the model's bits/byte, against f32. Embeddings, norms
// and the head stay f32, as in QLoRA. The model is a given run, or a
// byte-level model trained here for a few steps (a random model's bits/byte
// say nothing).
#include "core/bench/byte_model.h"
#include "core/bench/suite_context.h"
#include "core/data/corpus.h"
#include "core/bench/weight_quant_bench.h"
#include "core/train/evaluate.h"
#include "core/train/load_model.h"

#include <fmt/core.h>

namespace crucible::bench {

void run_quant_suite(SuiteContext& c)
{
    const std::string run_path = c.text("run");
    const int eval_tokens = c.integer("eval_tokens");
    const int batch = c.tiny() ? 2 : 8;
    std::unique_ptr<LoadedModel> loaded;
    std::unique_ptr<ByteModelRun> trained;
    std::unique_ptr<Transformer> eval_model;
    ParamStore* params = nullptr;
    std::vector<int32_t> ids, lengths;
    int seq = 0;
    if (!run_path.empty()) {
        c.step(0, 2, "loading " + run_path);
        loaded = std::make_unique<LoadedModel>(load_model(run_path, c.backend_options()));
        params = loaded->params.get();
        seq = loaded->config.seq_len;
        const std::string& text = Corpus::embedded_default().documents().front().text;
        ids = loaded->tokenizer.encode(text.substr(text.size() - text.size() / 10));
        for (int32_t i = 0; i < loaded->tokenizer.vocab_size(); ++i)
            lengths.push_back(int32_t(loaded->tokenizer.token_bytes(i).size()));
        eval_model = std::make_unique<Transformer>(*params, batch, seq, false);
    } else {
        const int steps = c.integer("train_steps");
        seq = c.tiny() ? 16 : 64;
        c.step(0, 2, fmt::format("training a byte-level model for {} steps", steps));
        trained = std::make_unique<ByteModelRun>(c.backend(), bench_model_config(c.tiny() ? "tiny" : "nano"),
                                                 OptimizerConfig{.lr = 3e-3f}, batch, seq, 1);
        for (int s = 0; s < steps; ++s) {
            c.check_cancel();
            trained->step();
        }
        params = &trained->params();
        ids = ByteText::embedded().val;
        lengths.assign(260, 1);
        eval_model = std::make_unique<Transformer>(*params, batch, seq, false);
    }
    if (eval_tokens > 0 && int64_t(ids.size()) > eval_tokens) ids.resize(size_t(eval_tokens));
    if (int64_t(ids.size()) <= seq) throw Error("quant: the evaluation text is shorter than one sequence");

    auto bits_per_byte = [&] { return evaluate_token_stream(*eval_model, ids, lengths, batch, seq).bits_per_byte; };
    const double f32_bpb = bits_per_byte();
    Row ref = make_row(c, "f32", "bits_per_weight", 32.0);
    add(ref, "bpb", f32_bpb, "bits/byte");
    add(ref, "mse", 0.0, "");
    c.emit(std::move(ref));
    const size_t schemes = weight_quant_schemes().size();
    size_t index = 0;
    c.step(index, schemes, std::string("quantizing to ") + to_string(weight_quant_schemes().front()));
    measure_weight_quant(*params, bits_per_byte, [&](const WeightQuantResult& q) {
        Row r = make_row(c, to_string(q.scheme), "bits_per_weight", q.bits_per_weight);
        add(r, "bpb", q.bits_per_byte, "bits/byte");
        add(r, "delta_bpb", q.bits_per_byte - f32_bpb, "bits/byte");
        add(r, "mse", q.weight_mse, "");
        c.emit(std::move(r));
        if (++index < schemes) c.step(index, schemes, std::string("quantizing to ") + to_string(weight_quant_schemes()[index]));
    });
    c.note(fmt::format("{}; {} evaluation tokens; f32 {:.4f} bits/byte",
                       run_path.empty() ? "byte-level model trained here" : run_path, ids.size(), f32_bpb));
}

} // namespace crucible::bench
