// A Hugging Face model directory, as `save_pretrained` writes it and the Hub
// serves it:
//
//   config.json                        LlamaForCausalLM or Qwen3ForCausalLM
//   model.safetensors                  one file, or
//   model.safetensors.index.json       {"weight_map": {tensor: shard}} and
//   model-00001-of-0000N.safetensors   its shards
//   tokenizer.model                    SentencePiece
//   tokenizer_config.json              optional: special tokens, chat template
//
// open_hf_model_dir() checks everything that can be checked without reading
// the weights — the architecture, the configuration, the tokenizer, every
// shard's header, each tensor's presence, dtype (F32, BF16, F16) and shape
// against the model the configuration describes — and throws an Error that
// names the directory and what is wrong. Loading then reads one shard at a
// time. Crucible's own checkpoint folders are such directories too.
#pragma once

#include "core/data/tokenizer.h"
#include "core/model/model_config.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

class ParamLayout;
class ParamStore;

struct HfModelDir {
    std::filesystem::path dir;
    std::string architecture;                // "LlamaForCausalLM" or "Qwen3ForCausalLM"
    ModelConfig config;
    // Every tensor the model needs (Hugging Face name) and the file holding it.
    std::map<std::string, std::filesystem::path> tensor_files;
    std::vector<std::filesystem::path> weight_files;   // model.safetensors, or the shards in order
    std::string weight_dtype;                // "F32", "BF16", "F16", or "mixed"
    uint64_t weight_bytes = 0;               // of the tensors the model uses, as stored
    std::filesystem::path tokenizer_file;
    // tokenizer_config.json when the directory has one (chat template, special tokens).
    std::optional<nlohmann::json> tokenizer_config;

    Tokenizer load_tokenizer() const;        // throws Error
};

// True when `dir` looks like a model directory (a config.json beside
// model.safetensors or model.safetensors.index.json); says nothing about
// whether it can be opened.
bool is_hf_model_dir(const std::filesystem::path& dir);

// Reads and checks the directory as described above; reads no weights.
HfModelDir open_hf_model_dir(const std::filesystem::path& dir);

// The weights laid out for `layout` (which must describe model.config), f32,
// read one file at a time; throws Error naming the file on any problem.
std::vector<float> read_hf_weights(const HfModelDir& model, const ParamLayout& layout);
// The same, uploaded into params (master weights, then the compute copy).
void load_hf_weights(const HfModelDir& model, ParamStore& params);

} // namespace crucible
