#include "core/io/gguf_export.h"

#include "core/model/param_layout.h"
#include "kernels/error.h"
#include "kernels/half.h"

#include <cstring>

namespace fs = std::filesystem;

namespace crucible {

namespace {

// llama.cpp's token types.
int32_t gguf_token_type(TokenKind kind)
{
    switch (kind) {
    case TokenKind::normal: return 1;
    case TokenKind::unknown: return 2;
    case TokenKind::control: return 3;
    case TokenKind::unused: return 5;
    case TokenKind::byte: return 6;
    }
    return 1;
}

// general.file_type: llama.cpp's LLAMA_FTYPE of the bulk of the tensors.
uint32_t file_type(gguf::TensorType t)
{
    switch (t) {
    case gguf::TensorType::f32: return 0;
    case gguf::TensorType::f16: return 1;
    case gguf::TensorType::q8_0: return 7;
    case gguf::TensorType::bf16: return 32;
    }
    return 1;
}

std::string encode(const std::vector<float>& v, gguf::TensorType type)
{
    std::string out;
    switch (type) {
    case gguf::TensorType::f32:
        out.assign(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
        break;
    case gguf::TensorType::f16: case gguf::TensorType::bf16:
        out.resize(v.size() * 2);
        for (size_t i = 0; i < v.size(); ++i) {
            const uint16_t h = type == gguf::TensorType::f16 ? f16_from_f32(v[i]) : bf16_from_f32(v[i]);
            std::memcpy(out.data() + 2 * i, &h, 2);
        }
        break;
    case gguf::TensorType::q8_0:
        out = gguf::quantize_q8_0(v.data(), int64_t(v.size()));
        break;
    }
    return out;
}

// llama.cpp's name for a tensor of ours.
std::string gguf_name(const ParamEntry& e)
{
    const std::string blk = "blk." + std::to_string(e.layer) + ".";
    switch (e.role) {
    case ParamRole::embedding: return "token_embd.weight";
    case ParamRole::attn_norm: return blk + "attn_norm.weight";
    case ParamRole::q_proj: return blk + "attn_q.weight";
    case ParamRole::k_proj: return blk + "attn_k.weight";
    case ParamRole::v_proj: return blk + "attn_v.weight";
    case ParamRole::q_norm: return blk + "attn_q_norm.weight";
    case ParamRole::k_norm: return blk + "attn_k_norm.weight";
    case ParamRole::o_proj: return blk + "attn_output.weight";
    case ParamRole::mlp_norm: return blk + "ffn_norm.weight";
    case ParamRole::gate_proj: return blk + "ffn_gate.weight";
    case ParamRole::up_proj: return blk + "ffn_up.weight";
    case ParamRole::down_proj: return blk + "ffn_down.weight";
    case ParamRole::final_norm: return "output_norm.weight";
    case ParamRole::lm_head: return "output.weight";
    default: break;
    }
    throw Error("GGUF export: the tensor " + e.name + " has no llama.cpp counterpart");
}

} // namespace

gguf::TensorType parse_gguf_type(const std::string& name)
{
    if (name == "f32") return gguf::TensorType::f32;
    if (name == "f16") return gguf::TensorType::f16;
    if (name == "bf16") return gguf::TensorType::bf16;
    if (name == "q8_0") return gguf::TensorType::q8_0;
    throw Error("unknown GGUF type \"" + name + "\"; choose f32, f16, bf16 or q8_0");
}

std::string encode_gguf_values(const std::vector<float>& values, gguf::TensorType type) { return encode(values, type); }

std::vector<float> interleave_rope_rows(const float* rows, int n_heads, int head_dim, int64_t in)
{
    std::vector<float> out(size_t(int64_t(n_heads) * head_dim * in));
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; ++h)
        for (int i = 0; i < half; ++i)
            for (int j = 0; j < 2; ++j) {
                const int64_t src = int64_t(h) * head_dim + j * half + i;
                const int64_t dst = int64_t(h) * head_dim + 2 * i + j;
                std::memcpy(out.data() + dst * in, rows + src * in, size_t(in) * sizeof(float));
            }
    return out;
}

GgufExportSummary export_gguf(const ModelConfig& config, const Tokenizer& tokenizer, const std::vector<float>& weights,
                              const GgufExportOptions& options, const fs::path& out)
{
    if (config.norm != NormType::rmsnorm)
        throw Error("llama.cpp's llama and qwen3 architectures normalise with RMSNorm, and this model uses LayerNorm; "
                    "train it with --norm rmsnorm to export it as GGUF");
    if (config.mlp != MlpType::swiglu)
        throw Error("llama.cpp's llama and qwen3 architectures have a SwiGLU MLP, and this model uses GELU; "
                    "train it with --mlp swiglu to export it as GGUF");
    if (tokenizer.vocab_size() != config.vocab_size)
        throw Error("the tokenizer has " + std::to_string(tokenizer.vocab_size()) + " tokens but the model " +
                    std::to_string(config.vocab_size));
    const ParamLayout layout(config);
    CRUCIBLE_CHECK(int64_t(weights.size()) == layout.total(), "GGUF export: weights do not match the layout");

    const bool qwen3 = config.qk_norm;
    const std::string arch = qwen3 ? "qwen3" : "llama";
    const int head_dim = config.resolved_head_dim();
    gguf::Writer w;
    w.add_string("general.architecture", arch);
    w.add_string("general.name", options.name.empty() ? config.name : options.name);
    w.add_u32("general.alignment", gguf::kDefaultAlignment);
    w.add_u32("general.file_type", file_type(options.type));
    if (options.type == gguf::TensorType::q8_0) w.add_u32("general.quantization_version", 2);
    w.add_u32(arch + ".vocab_size", uint32_t(config.vocab_size));
    w.add_u32(arch + ".context_length", uint32_t(config.seq_len));
    w.add_u32(arch + ".embedding_length", uint32_t(config.d_model));
    w.add_u32(arch + ".block_count", uint32_t(config.n_layers));
    w.add_u32(arch + ".feed_forward_length", uint32_t(config.ff_dim));
    w.add_u32(arch + ".attention.head_count", uint32_t(config.n_heads));
    w.add_u32(arch + ".attention.head_count_kv", uint32_t(config.n_kv_heads));
    w.add_u32(arch + ".attention.key_length", uint32_t(head_dim));
    w.add_u32(arch + ".attention.value_length", uint32_t(head_dim));
    w.add_f32(arch + ".attention.layer_norm_rms_epsilon", config.norm_eps);
    w.add_u32(arch + ".rope.dimension_count", uint32_t(head_dim));
    w.add_f32(arch + ".rope.freq_base", config.rope_theta);

    // The vocabulary, exactly as SentencePiece holds it.
    const int vocab = tokenizer.vocab_size();
    std::vector<std::string> pieces(static_cast<size_t>(vocab));
    std::vector<float> scores(static_cast<size_t>(vocab));
    std::vector<int32_t> types(static_cast<size_t>(vocab));
    for (int id = 0; id < vocab; ++id) {
        pieces[size_t(id)] = tokenizer.piece(id);
        scores[size_t(id)] = tokenizer.score(id);
        types[size_t(id)] = gguf_token_type(tokenizer.kind(id));
    }
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_strings("tokenizer.ggml.tokens", pieces);
    w.add_f32s("tokenizer.ggml.scores", scores);
    w.add_i32s("tokenizer.ggml.token_type", types);
    w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(tokenizer.bos_id()));
    w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(tokenizer.eos_id()));
    w.add_u32("tokenizer.ggml.unknown_token_id", uint32_t(tokenizer.unk_id()));
    w.add_bool("tokenizer.ggml.add_bos_token", options.add_bos);
    w.add_bool("tokenizer.ggml.add_eos_token", false);
    w.add_bool("tokenizer.ggml.add_space_prefix", tokenizer.adds_space_prefix());
    if (options.chat_template) w.add_string("tokenizer.chat_template", *options.chat_template);

    GgufExportSummary summary;
    summary.architecture = arch;
    for (const ParamEntry& e : layout.entries()) {
        const std::vector<int64_t> shape = e.dims();
        gguf::TensorType type = gguf::TensorType::f32;
        if (e.is_matrix()) {
            type = options.type;
            if (shape.back() % gguf::block_size(type) != 0) type = gguf::TensorType::f16;
        }
        summary.in_chosen_type += type == options.type;
        ++summary.tensors;
        const bool interleave = !qwen3 && (e.role == ParamRole::q_proj || e.role == ParamRole::k_proj);
        const int heads = e.role == ParamRole::q_proj ? config.n_heads : config.n_kv_heads;
        const float* src = weights.data() + e.offset;
        w.add_tensor(gguf_name(e), shape, type, [=]() {
            const std::vector<float> values = interleave ? interleave_rope_rows(src, heads, head_dim, shape[1])
                                                         : std::vector<float>(src, src + e.numel());
            return encode(values, type);
        });
    }
    w.write(out);
    summary.bytes = fs::file_size(out);
    return summary;
}

} // namespace crucible
