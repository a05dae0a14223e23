#include "core/io/gguf_lora_export.h"

#include "core/io/gguf_export.h"
#include "kernels/error.h"

namespace fs = std::filesystem;

namespace crucible {

std::string gguf_base_tensor_name(const std::string& module, int layer)
{
    const std::string blk = "blk." + std::to_string(layer) + ".";
    if (module == "q_proj") return blk + "attn_q.weight";
    if (module == "k_proj") return blk + "attn_k.weight";
    if (module == "v_proj") return blk + "attn_v.weight";
    if (module == "o_proj") return blk + "attn_output.weight";
    if (module == "gate_proj") return blk + "ffn_gate.weight";
    if (module == "up_proj") return blk + "ffn_up.weight";
    if (module == "down_proj") return blk + "ffn_down.weight";
    throw Error("GGUF adapter export: the module " + module + " has no llama.cpp counterpart");
}

GgufAdapterSummary export_gguf_lora(const LoraAdapters& adapters, gguf::TensorType type, const std::string& name,
                                    const fs::path& out)
{
    const ModelConfig& config = adapters.base_config();
    if (config.norm != NormType::rmsnorm || config.mlp != MlpType::swiglu)
        throw Error("llama.cpp's llama and qwen3 architectures have RMSNorm and a SwiGLU MLP, and this adapter's base "
                    "does not; its base cannot be exported as GGUF, so neither can the adapter");
    const bool qwen3 = config.qk_norm;
    const int r = adapters.config().rank;
    GgufAdapterSummary summary;
    summary.architecture = qwen3 ? "qwen3" : "llama";
    summary.alpha = adapters.config().scale() * float(r);

    gguf::Writer w;
    w.add_string("general.architecture", summary.architecture);
    w.add_string("general.type", "adapter");
    w.add_string("general.name", name);
    w.add_u32("general.alignment", gguf::kDefaultAlignment);
    w.add_string("adapter.type", "lora");
    w.add_f32("adapter.lora.alpha", summary.alpha);

    const int head_dim = config.resolved_head_dim();
    auto chosen = [type](int64_t row) { return row % gguf::block_size(type) == 0 ? type : gguf::TensorType::f16; };
    for (const LoraBlock& b : adapters.blocks()) {
        const std::string base = gguf_base_tensor_name(b.module, b.layer);
        const bool interleave = !qwen3 && (b.module == "q_proj" || b.module == "k_proj");
        const int heads = b.module == "q_proj" ? config.n_heads : config.n_kv_heads;
        const LoraBlock* block = &b;
        const LoraAdapters* source = &adapters;
        const gguf::TensorType ta = chosen(b.in), tb = chosen(r);
        w.add_tensor(base + ".lora_a", {r, b.in}, ta,
                     [=]() { return encode_gguf_values(source->download_a(*block), ta); });
        w.add_tensor(base + ".lora_b", {b.out, r}, tb, [=]() {
            const std::vector<float> rows = source->download_b(*block);
            return encode_gguf_values(interleave ? interleave_rope_rows(rows.data(), heads, head_dim, r) : rows, tb);
        });
        summary.tensors += 2;
    }
    w.write(out);
    summary.bytes = fs::file_size(out);
    return summary;
}

} // namespace crucible
