// crucible-cli eval / sample: use a trained model.
#include "app/cli/commands.h"
#include "app/cli/generation_options.h"

#include "core/data/dataset.h"
#include "core/generate/generator.h"
#include "core/generate/text_stream.h"
#include "core/io/file_util.h"
#include "core/model/transformer.h"
#include "core/train/evaluate.h"
#include "core/train/load_model.h"
#include "core/train/memory_estimate.h"
#include "core/train/run_dir.h"
#include "core/util/paths.h"
#include "kernels/error.h"

#include <fmt/core.h>

#include <chrono>
#include <cstdio>
#include <memory>

namespace crucible::cli {

namespace {

BackendOptions backend_options(const std::string& device, int threads)
{
    BackendOptions o;
    if (device == "cuda") o.device = DeviceKind::cuda;
    else if (device != "cpu") throw Error("--device must be cpu or cuda");
    o.threads = threads;
    return o;
}

struct EvalCommand {
    std::string run, text, device = "cpu";
    int batch = 8, threads = 0, max_batches = 0;
    bool json = false;
};

int run_eval(const EvalCommand& c)
{
    LoadedModel m = load_model(c.run, backend_options(c.device, c.threads));
    const int seq = m.config.seq_len;
    // The activations of batch × the model's context, checked before they are
    // allocated (an edited config.json can ask for terabytes). The weights are
    // loaded already and so counted in the free memory.
    MemoryEstimate need = estimate_inference_memory(m.config, c.batch, seq, m.backend->compute_dtype());
    need.parameters = need.compute_copy = 0;
    check_fits(need, m.backend->memory_info().free_bytes, m.backend->name());
    Transformer model(*m.params, c.batch, seq, false);
    EvalMetrics e;
    std::string source;
    const auto t0 = std::chrono::steady_clock::now();
    if (!c.text.empty()) {
        const std::string bytes = read_file(c.text);
        std::string why;
        if (!looks_like_text(bytes, &why)) throw Error(c.text + ": " + why);
        const std::vector<int32_t> ids = m.tokenizer.encode(bytes);
        std::vector<int32_t> lengths(size_t(m.tokenizer.vocab_size()));
        for (int32_t i = 0; i < m.tokenizer.vocab_size(); ++i) lengths[size_t(i)] = int32_t(m.tokenizer.token_bytes(i).size());
        e = evaluate_token_stream(model, ids, lengths, c.batch, seq);
        source = c.text;
    } else {
        if (m.run_root.empty())
            throw Error("a bare checkpoint folder has no validation split; pass --text FILE to evaluate on a file");
        const RunConfig rc = RunDirectory(m.run_root).read_config();
        const Corpus corpus = rc.data.paths.empty() ? Corpus::embedded_default()
            : Corpus::from_paths(std::vector<std::filesystem::path>(rc.data.paths.begin(), rc.data.paths.end()));
        const int run_seq = rc.train.resolved_seq_len(rc.model);
        const Dataset data =
            Dataset::build(corpus, m.tokenizer, rc.data.val_fraction, default_cache_dir() / "tokens", run_seq);
        e = evaluate_windows(model, data, data.val_windows(run_seq), c.batch, run_seq, int64_t(c.max_batches) * c.batch);
        source = "validation split of " + corpus.description();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (c.json) {
        fmt::print("{}\n", nlohmann::json({{"checkpoint", m.checkpoint.string()}, {"step", m.step}, {"loss", e.loss},
                                           {"perplexity", e.perplexity}, {"accuracy", e.accuracy},
                                           {"bits_per_byte", e.bits_per_byte}, {"tokens", e.tokens}}).dump());
        return 0;
    }
    fmt::print("checkpoint   {} (step {})\n", m.checkpoint.string(), m.step);
    fmt::print("text         {} ({} tokens, {:.1f} s)\n", source, e.tokens, secs);
    fmt::print("loss         {:.4f} nats/token\n", e.loss);
    fmt::print("perplexity   {:.3f}\n", e.perplexity);
    fmt::print("accuracy     {:.2f}%\n", 100.0 * e.accuracy);
    fmt::print("bits/byte    {:.4f}\n", e.bits_per_byte);
    return 0;
}

struct SampleCommand {
    std::string run, prompt = "\n", device = "cpu";
    int max_tokens = 200, threads = 0;
    SamplingConfig sampling;
};

int run_sample(const SampleCommand& c)
{
    // Settings first: a mistake is reported before anything is printed or loaded.
    if (const auto problems = c.sampling.problems(); !problems.empty()) throw Error(problems.front());
    if (c.max_tokens < 0) throw Error("--max-tokens must not be negative");
    LoadedModel m = load_model(c.run, backend_options(c.device, c.threads));
    const size_t context = size_t(m.config.seq_len);
    Generator generator(*m.params, m.tokenizer, 1, int(context));
    std::vector<int32_t> ids = m.tokenizer.encode(c.prompt);
    if (ids.empty()) ids.push_back(m.tokenizer.bos_id());
    std::fwrite(c.prompt.data(), 1, c.prompt.size(), stdout);
    std::fflush(stdout);

    // A full context does not end a sample: generation goes on from the last
    // half of the text, read again as a new prompt.
    GenerationRequest request;
    request.sampling = c.sampling;
    int generated = 0;
    double seconds = 0.0;
    std::string reason;
    CancelOnInterrupt cancel(generator);
    // Whole UTF-8 characters only: one may be split across two windows, and
    // the token limit may cut the last one short (its bytes are then dropped).
    TextStream shown;
    bool ends_in_newline = c.prompt.empty() || c.prompt.back() == '\n';
    auto show = [&](std::string_view bytes) {
        shown.append(bytes);
        const std::string out = shown.release(false);
        std::fwrite(out.data(), 1, out.size(), stdout);
        std::fflush(stdout);
        if (!out.empty()) ends_in_newline = out.back() == '\n';
    };
    while (generated < c.max_tokens) {
        if (ids.size() >= context) ids.erase(ids.begin(), ids.end() - std::ptrdiff_t(context / 2));
        request.prompts = {ids};
        request.max_new_tokens = c.max_tokens - generated;
        const GenerationStats st = generator.generate(request, [&](const TokenEvent& e) {
            show(e.text);
            return true;
        });
        ids.insert(ids.end(), st.tokens[0].begin(), st.tokens[0].end());
        generated += int(st.tokens[0].size());
        seconds += st.prefill_seconds + st.decode_seconds;
        reason = st.stop_reason;
        if (reason != "context full") break;
        request.sampling.seed += 1;
    }
    // The text ends its line on stdout, so a shell prompt or the summary starts on a new one.
    if (!ends_in_newline) std::fputc('\n', stdout);
    std::fflush(stdout);
    fmt::print(stderr, "[{} tokens in {:.2f} s, {:.1f} tokens/s with the KV cache; {}]\n", generated, seconds,
               seconds > 0 ? generated / seconds : 0.0, reason);
    return cancel.interrupted() ? kExitStopped : 0;
}

} // namespace

void add_eval_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<EvalCommand>();
    auto* cmd = app.add_subcommand("eval", "Evaluate a trained model: loss, perplexity, accuracy, bits per byte");
    cmd->add_option("--run", c->run, "Run directory or checkpoint folder")->required();
    cmd->add_option("--text", c->text, "Evaluate on this text file instead of the run's validation split");
    cmd->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    cmd->add_option("--batch", c->batch, "Sequences per batch")->capture_default_str()->check(CLI::Range(1, 4096));
    cmd->add_option("--max-batches", c->max_batches, "Evaluate at most this many batches (0 = all)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--json", c->json, "Print the metrics as JSON");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_eval(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

void add_sample_command(CLI::App& app, int& exit_code)
{
    auto c = std::make_shared<SampleCommand>();
    auto* cmd = app.add_subcommand("sample", "Continue a prompt with a trained model and read the text: one sequence, "
                                             "streamed, going on past the model's context (for a quick look)");
    cmd->add_option("--run", c->run, "Run directory or checkpoint folder")->required();
    cmd->add_option("--prompt", c->prompt, "Text to continue");
    cmd->add_option("--max-tokens", c->max_tokens, "Tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--temperature", c->sampling.temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
    cmd->add_option("--top-k", c->sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
    cmd->add_option("--top-p", c->sampling.top_p, "Keep the smallest set with probability mass ≥ p")->capture_default_str();
    cmd->add_option("--min-p", c->sampling.min_p, "Drop tokens below min-p × the top probability")->capture_default_str();
    cmd->add_option("--repetition-penalty", c->sampling.repetition_penalty, "Penalise tokens already seen (1 = off)");
    cmd->add_option("--presence-penalty", c->sampling.presence_penalty, "Subtract from seen tokens' logits");
    cmd->add_option("--seed", c->sampling.seed, "Random seed")->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_option("--device", c->device, "cpu or cuda")->capture_default_str();
    cmd->add_option("--threads", c->threads, "CPU threads (0 = all cores)");
    cmd->callback([c, &exit_code] {
        try {
            exit_code = run_sample(*c);
        } catch (const std::exception& e) {
            exit_code = report_error(e);
        }
    });
}

} // namespace crucible::cli
