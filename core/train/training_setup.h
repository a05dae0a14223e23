// Set-up of a training run, one unit per concern, in the order a run takes
// them: the configuration, the device, the data, the model and its
// optimizer, then either a fresh start or the checkpoint it resumes from.
// Each throws Error with a message that says what to change, and only
// start_new_run() writes to the run directory, so a run that cannot start
// leaves nothing behind.
#pragma once

#include "core/data/dataset.h"
#include "core/data/tokenizer.h"
#include "core/model/lora.h"
#include "core/model/nf4_base.h"
#include "core/model/param_store.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/train/checkpoint.h"
#include "core/train/memory_estimate.h"
#include "core/train/run_config.h"
#include "core/train/run_dir.h"
#include "core/train/run_reporter.h"
#include "kernels/backend_factory.h"

#include <filesystem>
#include <memory>
#include <optional>

namespace crucible {

// The configuration a run trains with, validated. A new run takes `requested`
// and needs a new or empty directory; a resumed run takes the run's own
// config.json, its step count extended when `requested` asks for more.
RunConfig resolve_run_config(const RunConfig& requested, const RunDirectory& run, bool resume);

// The backend of data-parallel replica `replica` (0 for a one-device run).
BackendOptions backend_options(const TrainConfig& tc, int replica = 0);

// A backend with room for the run: its peak memory, estimated before anything
// is allocated, is checked against the device's free memory.
struct TrainingDevice {
    std::unique_ptr<Backend> backend;
    MemoryEstimate estimate;
};
// With `lora`, the estimate is a fine-tune's (frozen base, trained adapters;
// `qlora`: its projections in NF4); `grad_checkpoint` keeps one layer's
// activations instead of every layer's.
TrainingDevice open_training_device(const BackendOptions& options, const ModelConfig& model, int batch, int seq_len,
                                    const LoraConfig* lora = nullptr, bool qlora = false,
                                    bool grad_checkpoint = false);

// The tokenizer and the tokenized corpus. A new run trains its tokenizer on
// the corpus (cached under cache_dir/tokenizers); a resumed run loads
// `tokenizer_file`, the one it trained with. Tokens are cached under
// cache_dir/tokens.
struct TrainingData {
    Tokenizer tokenizer;
    Dataset dataset;
};
TrainingData load_training_data(const RunConfig& cfg, int seq_len,
                                const std::optional<std::filesystem::path>& tokenizer_file,
                                const std::filesystem::path& cache_dir, RunReporter& reporter);

// The weights (with gradients), their optimizer and the model with
// activations for batch × seq_len; not yet initialised. In a fine-tune the
// base has no gradients, the adapters have, and the optimizer updates them.
struct TrainableModel {
    std::unique_ptr<ParamStore> params;
    std::unique_ptr<LoraAdapters> lora;   // fine-tunes only
    // QLoRA: the base projections in NF4, read and quantized when allocated;
    // `params` then holds the rest of the base (nf4_base_layout).
    std::unique_ptr<Nf4Base> nf4;
    std::unique_ptr<Optimizer> optimizer;
    std::unique_ptr<Transformer> model;
    size_t bytes() const;   // what it holds on the device
    // What the optimizer updates: the adapters in a fine-tune, else the weights.
    ParamStore& trained() const { return lora ? lora->store() : *params; }
};
TrainableModel allocate_model(Backend& backend, const ModelConfig& mc, const TrainConfig& tc, int seq_len,
                              std::optional<ParamRange> owned = std::nullopt);
// The same for `cfg`, a fine-tune's frozen base and adapters when it has a
// "finetune" section. `owned`: the range of the parameters whose optimizer
// state this replica holds (data parallel), default all.
TrainableModel allocate_model(Backend& backend, const RunConfig& cfg, int seq_len,
                              std::optional<ParamRange> owned = std::nullopt);

// The tokenizer a new run starts with: a fine-tune's base's; none (train one
// on the corpus) otherwise.
std::optional<std::filesystem::path> initial_tokenizer(const RunConfig& cfg);

// A new run: seeded weights (a fine-tune: the base's weights and seeded
// adapters); config.json and tokenizer.model written.
void start_new_run(const RunDirectory& run, const RunConfig& cfg, TrainableModel& model, const Tokenizer& tokenizer);

// Weights, optimizer state, data position and timers from `checkpoint`
// (a fine-tune's: the base's weights, then the adapters and their state).
TrainerState resume_from_checkpoint(const std::filesystem::path& checkpoint, TrainableModel& model, Batcher& batcher,
                                    const RunConfig& cfg);
// Refuses to resume a run that has already done tc.steps.
void check_steps_left(const TrainerState& state, const TrainConfig& tc);

// What the run reports when it starts.
RunInfo describe_run(const RunDirectory& run, const RunConfig& cfg, int seq_len, const TrainingDevice& device,
                     const Dataset& dataset, int64_t start_step);

} // namespace crucible
