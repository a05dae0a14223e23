// Loading a trained model for inference (eval, sample, chat, the GUI's Chat
// page): from a run directory (its latest checkpoint) or a checkpoint folder.
#pragma once

#include "core/data/tokenizer.h"
#include "core/model/param_store.h"
#include "kernels/backend_factory.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>

namespace crucible {

struct LoadedModel {
    std::unique_ptr<Backend> backend;
    ModelConfig config;
    Tokenizer tokenizer;
    std::unique_ptr<ParamStore> params;
    std::filesystem::path run_root;      // empty for a bare checkpoint folder
    std::filesystem::path checkpoint;
    int64_t step = 0;
    // tokenizer_config.json of a model from Hugging Face (chat template,
    // special tokens, whether prompts start with BOS); absent for models
    // trained here.
    std::optional<nlohmann::json> tokenizer_config;
};

// Throws Error naming what is missing or corrupt.
LoadedModel load_model(const std::filesystem::path& run_or_checkpoint, const BackendOptions& backend);

} // namespace crucible
