// Checkpoints in Hugging Face layout, plus what exact resumption needs.
//
//   model.safetensors      f32 weights, HF Llama names, [out, in]
//   config.json            HF config (LlamaForCausalLM / Qwen3ForCausalLM)
//   tokenizer.model        SentencePiece model
//   optimizer.safetensors  exp_avg.* / exp_avg_sq.* (AdamW), momentum.* (Muon)
//   trainer_state.json     step, data position, timers (written last)
//
// The directory is written under a temporary name and renamed into place, so a
// crash never leaves a half-written checkpoint.
#pragma once

#include "core/data/dataset.h"
#include "core/model/param_store.h"
#include "core/optim/optimizer.h"
#include "core/train/training_sink.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>

namespace crucible {

class Tokenizer;

struct TrainerState {
    int64_t step = 0;              // optimizer steps completed
    int64_t tokens_seen = 0;
    double elapsed_s = 0.0;        // training time
    Batcher::State batcher;
    std::optional<EvalMetrics> last_eval;
    int64_t skipped_steps = 0;     // updates skipped for a non-finite loss or gradient
};

nlohmann::json to_json(const TrainerState& s);
TrainerState trainer_state_from_json(const nlohmann::json& j);

// Writes a complete checkpoint directory atomically. optimizer/state may be
// null for a weights-only export.
void save_checkpoint(const std::filesystem::path& dir, const ParamStore& params, const Tokenizer& tokenizer,
                     const Optimizer* optimizer, const TrainerState* state);
// The same with the optimizer state already on the host (gathered from the
// replicas that each hold a share of it).
void save_checkpoint_snapshot(const std::filesystem::path& dir, const ParamStore& params, const Tokenizer& tokenizer,
                              const OptimizerSnapshot* optimizer, const TrainerState* state);

// Reads model.safetensors into params (master weights, then the compute copy).
// Throws Error naming the file when it is missing, corrupt or shaped for a
// different model.
void load_weights(const std::filesystem::path& dir, ParamStore& params);
void load_optimizer(const std::filesystem::path& dir, Optimizer& optimizer, const ParamStore& params);
// optimizer.safetensors as a whole-layout snapshot, checked against `config`'s optimizer type.
OptimizerSnapshot read_optimizer_state(const std::filesystem::path& dir, const ParamLayout& layout,
                                       const OptimizerConfig& config);
TrainerState load_trainer_state(const std::filesystem::path& dir);

} // namespace crucible
