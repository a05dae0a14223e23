// Loading a trained model for inference (eval, sample, chat, the GUI's Chat
// page): from a run directory (its latest checkpoint) or a checkpoint folder.
// A fine-tune run, one of its checkpoints, or a PEFT adapter folder whose
// base_model_name_or_path is a local model loads as its base with the
// adapters merged into the weights (W + scale·B·A), so every inference path
// runs at the base's speed.
#pragma once

#include "core/data/tokenizer.h"
#include "core/model/lora_config.h"
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
    // A fine-tune: the base it was merged into, and its adapters' settings.
    std::filesystem::path base;
    std::optional<LoraConfig> lora;
    // A QLoRA fine-tune: its adapters were merged into the NF4 base's
    // dequantized weights (the base it trained on), now in high precision.
    bool nf4_base = false;
};

// Throws Error naming what is missing or corrupt.
LoadedModel load_model(const std::filesystem::path& run_or_checkpoint, const BackendOptions& backend);
// A base model with the adapters of `adapter_dir` (a PEFT folder or a
// fine-tune checkpoint) merged in. With `nf4_base` (a QLoRA run) the base's
// projections are first rounded through NF4 with double quant, as the run
// trained over them: merging dequantizes the NF4 base.
LoadedModel load_model_with_adapter(const std::filesystem::path& base, const std::filesystem::path& adapter_dir,
                                    const BackendOptions& backend, bool nf4_base = false);

} // namespace crucible
