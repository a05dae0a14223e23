// Importing a Hugging Face model directory as a Crucible run, so that it can
// be evaluated, chatted with, exported, and trained further with
// `train --resume` like any run trained here.
//
//   RUN/config.json                  RunConfig: the model from config.json, the
//                                    training and data settings given
//   RUN/tokenizer.model              the model's own SentencePiece file, as is
//   RUN/tokenizer_config.json        copied when present (chat template, special tokens)
//   RUN/metrics.jsonl                one "import" record
//   RUN/checkpoints/step_0/          the weights in the source's dtype (BF16,
//                                    F16 or F32), config.json, tokenizer.model,
//                                    trainer_state.json at step 0; no optimizer
//                                    state, so training starts a fresh one
//
// Everything is checked first (open_hf_model_dir) and the run is written under
// a temporary name and renamed into place: a refused model writes nothing.
#pragma once

#include "core/io/hf_model_dir.h"
#include "core/train/run_config.h"

#include <filesystem>

namespace crucible {

struct ImportedRun {
    HfModelDir source;
    RunConfig config;
    std::filesystem::path checkpoint;
};

// `settings` gives the training and data settings of the new run (its model
// is replaced by the imported one). run_dir must not exist or be empty.
ImportedRun import_hf_model(const std::filesystem::path& hf_dir, const std::filesystem::path& run_dir,
                            const RunConfig& settings);

} // namespace crucible
