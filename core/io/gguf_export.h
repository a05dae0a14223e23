// A model as a GGUF file that llama.cpp runs (and everything built on it:
// Ollama, LM Studio, node-llama-cpp).
//
// Architecture "llama" (or "qwen3" for models with QK-norm), with the
// hyper-parameters llama.cpp reads; the SentencePiece vocabulary as
// tokenizer.ggml.model "llama" with pieces, scores and token types, and
// tokenizer.ggml.add_space_prefix saying whether the tokenizer adds a dummy
// prefix (Crucible's own do not: without `false` there llama.cpp would split
// "ROMEO:" differently); tensors under llama.cpp's names. llama.cpp rotates
// the pairs (2i, 2i+1) of a head where Hugging Face's layout rotates (i, i +
// D/2), so the rows of q_proj and k_proj are interleaved for "llama";
// "qwen3" rotates in Hugging Face's order and keeps them. Norm weights stay
// f32; matrices take the chosen type (q8_0 where rows divide into blocks of
// 32, f16 otherwise).
#pragma once

#include "core/data/tokenizer.h"
#include "core/io/gguf.h"
#include "core/model/model_config.h"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace crucible {

struct GgufExportOptions {
    gguf::TensorType type = gguf::TensorType::f16;
    std::string name;                        // general.name
    std::optional<std::string> chat_template;   // tokenizer.chat_template
    bool add_bos = false;                    // whether prompts start with BOS (models from Hugging Face: yes)
};

struct GgufExportSummary {
    std::string architecture;
    int tensors = 0;
    int in_chosen_type = 0;                  // the rest: f32 norms, f16 fallbacks
    uint64_t bytes = 0;                      // of the file
};

// "f32", "f16", "bf16", "q8_0" → the type; throws Error naming the choices.
gguf::TensorType parse_gguf_type(const std::string& name);

// Throws Error when the model has parts llama.cpp's architectures lack
// (LayerNorm, a GELU MLP), with what to change; writes atomically.
GgufExportSummary export_gguf(const ModelConfig& config, const Tokenizer& tokenizer,
                              const std::vector<float>& weights, const GgufExportOptions& options,
                              const std::filesystem::path& out);

// Values in a GGUF tensor type, as the file stores them.
std::string encode_gguf_values(const std::vector<float>& values, gguf::TensorType type);

// The rows of a [n_heads · head_dim, in] projection reordered from Hugging
// Face's rotate-half layout to llama.cpp's interleaved one.
std::vector<float> interleave_rope_rows(const float* rows, int n_heads, int head_dim, int64_t in);

} // namespace crucible
