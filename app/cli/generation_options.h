// What `generate`, `chat` and `sample` share: the model and sampling options,
// loading a draft model for speculative decoding, Ctrl-C as a cancel of the
// current generation, and the speed summary printed to stderr.
#pragma once

#include "core/generate/generator.h"
#include "core/train/load_model.h"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

namespace crucible::cli {

struct GenerationOptions {
    std::string run, device = "cpu", draft;
    int threads = 0, max_tokens = 200, lookahead = 4;
    SamplingConfig sampling;
    std::vector<std::string> stops;   // as typed: \n, \t and \\ are unescaped by stop_strings()

    // --run, --device, --threads, --max-tokens and the sampling flags.
    void add_model_and_sampling(CLI::App& cmd);
    // --stop, --draft and --lookahead.
    void add_stop_and_draft(CLI::App& cmd);

    BackendOptions backend() const;
    std::vector<std::string> stop_strings() const;
};

// "a\nb" typed on a command line as a\\nb: \n, \t, \r and \\ become the bytes.
std::string unescape(const std::string& typed);

// The draft run for speculative decoding, checked to share the target's tokenizer.
std::unique_ptr<LoadedModel> load_draft(const GenerationOptions& o, const LoadedModel& target);

// While alive, Ctrl-C asks `generator` to stop (within one token) instead of
// ending the process; a second Ctrl-C ends it as usual.
class CancelOnInterrupt {
public:
    explicit CancelOnInterrupt(Generator& generator);
    ~CancelOnInterrupt();
    CancelOnInterrupt(const CancelOnInterrupt&) = delete;
    CancelOnInterrupt& operator=(const CancelOnInterrupt&) = delete;
    bool interrupted() const;
};

// "[prefill 32 tokens at 1234 tok/s · 200 tokens at 56.7 tok/s · length · draft acceptance 61%]"
std::string speed_summary(const GenerationStats& st);

} // namespace crucible::cli
