// LoRA adapters as a GGUF adapter file that llama.cpp applies over the base's
// own GGUF export (llama-cli --lora FILE, llama_adapter_lora_init).
//
// general.type "adapter", adapter.type "lora", general.architecture that of
// the base's export (llama or qwen3), and per adapted projection two tensors
// named after the base tensor: blk.N.attn_q.weight.lora_a [r, in] and
// .lora_b [out, r], as PEFT shapes them. llama.cpp scales the product by
// adapter.lora.alpha / r, so alpha is written as our effective scale × r
// (rsLoRA's alpha / √r included). The base export interleaves the rows of
// q_proj and k_proj for llama.cpp's RoPE; B of q and k, whose rows are those
// projections' output rows, is interleaved the same way.
#pragma once

#include "core/io/gguf.h"
#include "core/model/lora.h"

#include <filesystem>
#include <string>

namespace crucible {

struct GgufAdapterSummary {
    std::string architecture;
    int tensors = 0;
    float alpha = 0.0f;      // as written: scale × r
    uint64_t bytes = 0;
};

// llama.cpp's name of the base tensor a PEFT module adapts in `layer`
// ("blk.3.attn_q.weight").
std::string gguf_base_tensor_name(const std::string& module, int layer);

// Writes atomically. Matrices take `type` where their rows divide into its
// blocks, f16 otherwise (as the base export does).
GgufAdapterSummary export_gguf_lora(const LoraAdapters& adapters, gguf::TensorType type, const std::string& name,
                                    const std::filesystem::path& out);

} // namespace crucible
