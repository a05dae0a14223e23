// A model as a Hugging Face folder that transformers loads with
// AutoModelForCausalLM.from_pretrained and whose tokenizer.model
// LlamaTokenizer reads:
//
//   config.json               LlamaForCausalLM / Qwen3ForCausalLM (to_hf_config)
//   model.safetensors         F32, BF16 or F16, Hugging Face names
//   tokenizer.model           the SentencePiece model, unchanged
//   tokenizer_config.json     LlamaTokenizer settings that reproduce Crucible's
//                             ids (legacy SentencePiece encoding, BOS as the
//                             model was trained), or the imported model's own
//   generation_config.json    BOS / EOS ids
//
// Written under a temporary name and renamed into place.
#pragma once

#include "core/data/tokenizer.h"
#include "core/model/model_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

struct HfExportOptions {
    std::string dtype = "F32";                          // F32, BF16 or F16
    std::optional<nlohmann::json> tokenizer_config;     // kept as is when given
};

// "f32" / "bf16" / "f16" (any case) → the safetensors dtype; throws Error.
std::string parse_hf_dtype(const std::string& name);

void export_hf(const ModelConfig& config, const Tokenizer& tokenizer, const std::vector<float>& weights,
               const HfExportOptions& options, const std::filesystem::path& out_dir);

} // namespace crucible
