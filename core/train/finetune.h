// Fine-tuning with LoRA: the base model a fine-tune starts from, and the
// checkpoints of a fine-tune run.
//
// A fine-tune run is a run directory whose config.json has a "finetune"
// section (the base's path and the LoraConfig); its checkpoints hold the
// adapters in PEFT's format, which PEFT loads as they are, beside what exact
// resumption needs:
//
//   adapter_config.json, adapter_model.safetensors   (core/io/peft_adapter.h)
//   optimizer.safetensors   AdamW moments of the adapters (metadata: steps,
//                           dropout_calls, the dropout stream's position)
//   tokenizer.model         the base's tokenizer
//   trainer_state.json      written last
#pragma once

#include "core/data/tokenizer.h"
#include "core/model/lora.h"
#include "core/optim/optimizer.h"
#include "core/train/checkpoint.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

namespace crucible {

// A base model: a run trained here (its latest checkpoint), a checkpoint
// folder, or a Hugging Face LlamaForCausalLM / Qwen3ForCausalLM folder.
struct BaseModel {
    std::filesystem::path path;               // as given, made absolute
    std::filesystem::path weights;            // the checkpoint or model folder read
    bool hf_folder = false;                   // weights read through open_hf_model_dir
    ModelConfig config;
    std::filesystem::path tokenizer_file;
    std::optional<nlohmann::json> tokenizer_config;
};

// Checks the base without reading its weights; throws Error naming what is
// wrong (a fine-tune as the base: merge it first).
BaseModel open_base_model(const std::filesystem::path& path);
void load_base_weights(const BaseModel& base, ParamStore& params);

// True when `dir` holds a fine-tune checkpoint (or any PEFT adapter folder).
bool is_adapter_checkpoint(const std::filesystem::path& dir);

// Writes a fine-tune checkpoint atomically. optimizer/state may be null.
void save_finetune_checkpoint(const std::filesystem::path& dir, const LoraAdapters& adapters,
                              const std::string& base_model_name_or_path, const Tokenizer& tokenizer,
                              const Optimizer* optimizer, const TrainerState* state);
// Adapter weights, and when given the optimizer state and dropout position.
void load_finetune_checkpoint(const std::filesystem::path& dir, LoraAdapters& adapters, Optimizer* optimizer);

} // namespace crucible
