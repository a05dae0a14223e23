// Tiny Hugging Face model folders for the interoperability tests: a few
// thousand parameters in LLaMA or Qwen3 layout, written with the project's
// safetensors writer the way save_pretrained lays them out (one file or
// shards plus model.safetensors.index.json, in F32, BF16 or F16), with a
// SentencePiece tokenizer.model that adds a dummy prefix as LLaMA's does.
#pragma once

#include "core/data/tokenizer.h"
#include "core/model/model_config.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace crucible::test {

struct TinyHfModel {
    bool qwen3 = false;            // Qwen3ForCausalLM with QK-norm (and head_dim ≠ d_model / heads)
    bool tied = false;
    std::string dtype = "F32";     // F32, BF16 or F16
    int shards = 1;                // > 1: model-0000N-of-0000M.safetensors + index
    bool space_prefix = true;      // the tokenizer adds a dummy prefix (LLaMA's does)
    int context = 128;
    uint64_t seed = 7;
};

// A 320-token SentencePiece model trained on the start of the embedded corpus
// (cached in the test cache), with or without a dummy prefix.
const Tokenizer& tiny_tokenizer(bool space_prefix);

ModelConfig tiny_model_config(const TinyHfModel& spec);

// Writes the folder; returns its config.json and the weights as stored,
// converted to f32 and laid out by ParamLayout(tiny_model_config(spec)).
struct WrittenHfModel {
    nlohmann::json config;
    std::vector<float> weights;
};
WrittenHfModel write_tiny_hf_model(const std::filesystem::path& dir, const TinyHfModel& spec);

} // namespace crucible::test
