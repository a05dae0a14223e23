// ModelConfig: the architecture of a LLaMA-style decoder, and the facts derived
// from it (parameter counts, FLOPs per token) that the UI and MFU need.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace crucible {

enum class NormType { rmsnorm, layernorm };
enum class MlpType { swiglu, gelu };

const char* to_string(NormType t);
const char* to_string(MlpType t);

struct ModelConfig {
    std::string name = "custom";
    int vocab_size = 2048;
    int d_model = 128;
    int n_layers = 4;
    int n_heads = 4;
    int n_kv_heads = 2;
    int head_dim = 0;          // 0 = d_model / n_heads
    int ff_dim = 384;          // hidden size of the MLP
    int seq_len = 128;         // context length (max positions)
    float rope_theta = 10000.0f;
    float norm_eps = 1e-5f;
    NormType norm = NormType::rmsnorm;
    MlpType mlp = MlpType::swiglu;
    bool qk_norm = false;
    bool tied_embeddings = true;
    float init_std = 0.02f;

    int resolved_head_dim() const { return head_dim > 0 ? head_dim : (n_heads > 0 ? d_model / n_heads : 0); }
    int q_dim() const { return n_heads * resolved_head_dim(); }
    int kv_dim() const { return n_kv_heads * resolved_head_dim(); }
    int qkv_dim() const { return q_dim() + 2 * kv_dim(); }
    // Rows of the stacked MLP input projection: gate+up for SwiGLU, up for GELU.
    int mlp_in_dim() const { return mlp == MlpType::swiglu ? 2 * ff_dim : ff_dim; }

    // Every problem with this configuration, each a sentence saying what to
    // change. Empty when the configuration is valid.
    std::vector<std::string> problems() const;
    // Throws Error listing problems() when there are any.
    void validate() const;
};

// Parameter counts by component, for the Model page and the README.
struct ParamCounts {
    int64_t embedding = 0;
    int64_t attention = 0;     // q, k, v, o (+ QK-norm weights)
    int64_t mlp = 0;
    int64_t norms = 0;
    int64_t lm_head = 0;       // 0 when tied
    int64_t total() const { return embedding + attention + mlp + norms + lm_head; }
    // Parameters that take part in matmuls per token (attention + MLP + head).
    int64_t matmul() const;
};

ParamCounts count_params(const ModelConfig& c);

// Training FLOPs per token: 6·N_matmul + 6·L·T·d_attn (causal attention, the
// QKᵀ and PV products counted at half the full T×T work).
double training_flops_per_token(const ModelConfig& c, int seq_len);

nlohmann::json to_json(const ModelConfig& c);
// Unknown keys are refused, missing keys keep their defaults; throws Error.
ModelConfig model_config_from_json(const nlohmann::json& j);

// Built-in presets (nano, micro, small, base), embedded from resources/presets.
std::vector<std::string> preset_names();
ModelConfig preset(const std::string& name);   // throws Error with the known names

} // namespace crucible
