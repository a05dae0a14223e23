// What a run does between optimizer steps when it falls due: evaluation on
// the validation split, a text sample, a checkpoint. Each is its own unit so
// that every way of training (from scratch, a fine-tune, data-parallel
// replicas) schedules and writes them the same way.
#pragma once

#include "core/data/dataset.h"
#include "core/data/tokenizer.h"
#include "core/model/transformer.h"
#include "core/train/checkpoint.h"
#include "core/train/run_config.h"
#include "core/train/run_dir.h"

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

// What falls due once `step` optimizer steps are done. The last step always
// evaluates, samples and checkpoints.
struct DueWork {
    bool eval = false;
    bool sample = false;       // never when TrainConfig::sample_tokens is 0
    bool checkpoint = false;
};
DueWork work_due_after(const TrainConfig& tc, int64_t step);

// True when the latest evaluation reached TrainConfig::target_bits_per_byte.
bool target_reached(const TrainConfig& tc, const TrainerState& state);

// Validation metrics over up to tc.eval_batches batches of `windows` (all of
// them when 0), stamped with `step` and the time they took. `cancelled` is
// polled between batches.
EvalMetrics evaluate_step(Transformer& model, const Dataset& data, const std::vector<Window>& windows,
                          const TrainConfig& tc, int seq_len, int64_t step, const std::function<bool()>& cancelled);

// tc.sample_tokens continuing tc.sample_prompt, drawn by full recomputation
// with the training model (top-k 40, seeded by the run's seed and `step`, so a
// resumed run draws the same text). `cancelled` is polled per token.
std::string draw_sample(Transformer& model, const Tokenizer& tokenizer, const TrainConfig& tc, int64_t step,
                        const std::function<bool()>& cancelled);

// The run's checkpoints: at most one per step (stopping right after a
// scheduled checkpoint writes nothing new), the latest remembered.
class CheckpointWriter {
public:
    // A resumed run starts from, and already has, this checkpoint.
    void resumed_from(const std::filesystem::path& dir, int64_t step);

    // Writes checkpoints/step_<state.step> of `run` (see save_checkpoint; a
    // fine-tune's adapters, see save_finetune_checkpoint) and returns it, or
    // nothing when that step's checkpoint was already written. `gathered`:
    // the optimizer state collected from data-parallel replicas that each
    // hold a share of it, written instead of `optimizer`'s.
    std::optional<std::filesystem::path> write(const RunDirectory& run, const TrainerState& state,
                                               const ParamStore& params, const Tokenizer& tokenizer,
                                               const Optimizer* optimizer, const LoraAdapters* lora = nullptr,
                                               const std::string& base = "",
                                               const OptimizerSnapshot* gathered = nullptr);
    bool written(int64_t step) const { return m_latest_step == step; }

    const std::string& latest() const { return m_latest; }   // empty until one exists

private:
    std::string m_latest;
    int64_t m_latest_step = -1;
};

} // namespace crucible
