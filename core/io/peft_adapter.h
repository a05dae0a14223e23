// PEFT adapter folders: what `PeftModel.from_pretrained` reads and
// `save_pretrained` writes for a LoRA on a LLaMA-family model.
//
//   adapter_config.json         peft_type "LORA", task_type "CAUSAL_LM", r,
//                               lora_alpha, lora_dropout, target_modules,
//                               use_rslora, init_lora_weights, bias "none",
//                               base_model_name_or_path
//   adapter_model.safetensors   base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
//                               [r, in], ...lora_B.weight [out, r] (f32 here;
//                               bf16 and f16 are read too)
//
// Reading refuses what this LoRA does not compute (DoRA, per-module ranks,
// biases, extra trained modules, a layer subset) with a message naming it.
#pragma once

#include "core/model/lora.h"

#include <nlohmann/json_fwd.hpp>

#include <filesystem>
#include <string>

namespace crucible {

// True when `dir` holds adapter_config.json.
bool is_peft_adapter_dir(const std::filesystem::path& dir);

nlohmann::json peft_adapter_config(const LoraConfig& config, const std::string& base_model_name_or_path);

// Writes both files into `dir` (which must exist; each file is atomic).
void write_peft_adapter(const std::filesystem::path& dir, const LoraAdapters& adapters,
                        const std::string& base_model_name_or_path);

struct PeftAdapterInfo {
    LoraConfig config;
    std::string base_model_name_or_path;
};
// adapter_config.json, checked against the base it is to apply to.
PeftAdapterInfo read_peft_config(const std::filesystem::path& dir, const ModelConfig& base);
// adapter_model.safetensors into adapters made from read_peft_config's
// config: every tensor present, shaped for the base, and nothing else.
void load_peft_weights(const std::filesystem::path& dir, LoraAdapters& adapters);

} // namespace crucible
