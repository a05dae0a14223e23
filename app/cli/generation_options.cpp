#include "app/cli/generation_options.h"

#include "kernels/error.h"

#include <fmt/core.h>

#include <atomic>
#include <csignal>

namespace crucible::cli {

namespace {

std::atomic<Generator*> g_cancel_target{nullptr};
volatile std::sig_atomic_t g_interrupted = 0;

void on_interrupt(int)
{
    g_interrupted = 1;
    if (Generator* g = g_cancel_target.load()) g->request_cancel();
    std::signal(SIGINT, SIG_DFL);   // a second Ctrl-C ends the process at once
}

} // namespace

void GenerationOptions::add_model_and_sampling(CLI::App& cmd)
{
    cmd.add_option("--run", run, "Run directory or checkpoint folder")->required();
    cmd.add_option("--max-tokens", max_tokens, "Tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
    cmd.add_option("--temperature", sampling.temperature, "Sampling temperature (0 = greedy)")->capture_default_str();
    cmd.add_option("--top-k", sampling.top_k, "Keep the k most likely tokens (0 = off)")->capture_default_str();
    cmd.add_option("--top-p", sampling.top_p, "Keep the smallest set with probability mass ≥ p")->capture_default_str();
    cmd.add_option("--min-p", sampling.min_p, "Drop tokens below min-p × the top probability")->capture_default_str();
    cmd.add_option("--repetition-penalty", sampling.repetition_penalty, "Penalise tokens already seen (1 = off)");
    cmd.add_option("--presence-penalty", sampling.presence_penalty, "Subtract from seen tokens' logits");
    cmd.add_option("--seed", sampling.seed, "Random seed")->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd.add_option("--device", device, "cpu or cuda")->capture_default_str();
    cmd.add_option("--threads", threads, "CPU threads (0 = all cores)");
}

void GenerationOptions::add_stop_and_draft(CLI::App& cmd)
{
    cmd.add_option("--stop", stops, "Stop when this text appears (repeatable; \\n and \\t are understood)");
    cmd.add_option("--draft", draft, "A smaller run with the same tokenizer for speculative decoding");
    cmd.add_option("--lookahead", lookahead, "Draft tokens per speculative step")->capture_default_str();
}

BackendOptions GenerationOptions::backend() const
{
    BackendOptions o;
    if (device == "cuda") o.device = DeviceKind::cuda;
    else if (device != "cpu") throw Error("--device must be cpu or cuda");
    o.threads = threads;
    return o;
}

std::vector<std::string> GenerationOptions::stop_strings() const
{
    std::vector<std::string> out;
    for (const auto& s : stops) {
        if (s.empty()) throw Error("--stop needs a non-empty text");
        out.push_back(unescape(s));
    }
    return out;
}

std::string unescape(const std::string& typed)
{
    std::string out;
    for (size_t i = 0; i < typed.size(); ++i) {
        if (typed[i] != '\\' || i + 1 == typed.size()) {
            out += typed[i];
            continue;
        }
        switch (typed[++i]) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case '\\': out += '\\'; break;
        default: out += '\\'; out += typed[i]; break;
        }
    }
    return out;
}

std::unique_ptr<LoadedModel> load_draft(const GenerationOptions& o, const LoadedModel& target)
{
    if (o.draft.empty()) return nullptr;
    auto draft = std::make_unique<LoadedModel>(load_model(o.draft, o.backend()));
    if (draft->tokenizer.fingerprint() != target.tokenizer.fingerprint())
        throw Error("the draft run " + o.draft + " has another tokenizer than " + o.run +
                    "; speculative decoding needs both models trained with the same tokenizer");
    return draft;
}

CancelOnInterrupt::CancelOnInterrupt(Generator& generator)
{
    g_interrupted = 0;
    g_cancel_target.store(&generator);
    std::signal(SIGINT, on_interrupt);
}

CancelOnInterrupt::~CancelOnInterrupt()
{
    std::signal(SIGINT, SIG_DFL);
    g_cancel_target.store(nullptr);
}

bool CancelOnInterrupt::interrupted() const { return g_interrupted != 0; }

std::string speed_summary(const GenerationStats& st)
{
    std::string s = fmt::format("[prefill {} tokens at {:.0f} tok/s · {} tokens at {:.1f} tok/s · {}", st.prompt_tokens,
                                st.prefill_tokens_per_s(), st.generated_tokens, st.decode_tokens_per_s(),
                                st.stop_reason.empty() ? "done" : st.stop_reason);
    if (st.draft_proposed > 0)
        s += fmt::format(" · draft acceptance {:.0f}% ({} of {})", 100.0 * st.acceptance_rate(), st.draft_accepted,
                         st.draft_proposed);
    return s + "]";
}

} // namespace crucible::cli
