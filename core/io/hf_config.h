// Hugging Face config.json for a checkpoint: LlamaForCausalLM keys (or
// Qwen3ForCausalLM when QK-norm is on), so transformers, vLLM and llama.cpp's
// converter read our checkpoints unchanged. Options outside those families
// (LayerNorm, GELU) are kept under a "crucible" key so our own loader
// round-trips every ModelConfig exactly.
#pragma once

#include "core/model/model_config.h"

#include <nlohmann/json.hpp>

namespace crucible {

nlohmann::json to_hf_config(const ModelConfig& config, int bos_id, int eos_id);
// Accepts our own files and plain HF Llama/Qwen3 configs; throws Error.
ModelConfig from_hf_config(const nlohmann::json& j);

} // namespace crucible
