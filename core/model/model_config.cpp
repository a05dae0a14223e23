#include "core/model/model_config.h"

#include "core/util/json_read.h"
#include "kernels/error.h"
#include "resources/embedded_resources.h"

#include <nlohmann/json.hpp>

#include <set>

namespace crucible {

const char* to_string(NormType t) { return t == NormType::rmsnorm ? "rmsnorm" : "layernorm"; }
const char* to_string(MlpType t) { return t == MlpType::swiglu ? "swiglu" : "gelu"; }

std::vector<std::string> ModelConfig::problems() const
{
    std::vector<std::string> p;
    auto need = [&](bool ok, const std::string& msg) { if (!ok) p.push_back(msg); };
    need(vocab_size >= 260 && vocab_size <= 1'048'576,
         "vocab_size must be between 260 (256 byte pieces plus specials) and 1048576, got " + std::to_string(vocab_size));
    need(d_model >= 8 && d_model <= 65536, "d_model must be between 8 and 65536, got " + std::to_string(d_model));
    need(n_layers >= 1 && n_layers <= 512, "n_layers must be between 1 and 512, got " + std::to_string(n_layers));
    need(n_heads >= 1, "n_heads must be at least 1, got " + std::to_string(n_heads));
    need(n_kv_heads >= 1, "n_kv_heads must be at least 1, got " + std::to_string(n_kv_heads));
    if (n_heads >= 1 && n_kv_heads >= 1)
        need(n_heads % n_kv_heads == 0, "n_heads (" + std::to_string(n_heads) +
             ") must be divisible by n_kv_heads (" + std::to_string(n_kv_heads) +
             "): each key/value head serves a whole group of query heads");
    if (head_dim == 0 && n_heads >= 1)
        need(d_model % n_heads == 0, "d_model (" + std::to_string(d_model) + ") must be divisible by n_heads (" +
             std::to_string(n_heads) + "), or set head_dim explicitly");
    const int hd = resolved_head_dim();
    need(hd >= 2 && hd % 2 == 0 && hd <= 512,
         "head_dim must be even and between 2 and 512 (RoPE rotates pairs), got " + std::to_string(hd));
    need(ff_dim >= 1, "ff_dim must be at least 1, got " + std::to_string(ff_dim));
    need(seq_len >= 2 && seq_len <= 131072, "seq_len must be between 2 and 131072, got " + std::to_string(seq_len));
    need(rope_theta > 1.0f, "rope_theta must be greater than 1");
    need(norm_eps > 0.0f && norm_eps < 1.0f, "norm_eps must be in (0, 1)");
    need(init_std > 0.0f && init_std < 1.0f, "init_std must be in (0, 1)");
    return p;
}

void ModelConfig::validate() const
{
    const auto p = problems();
    if (p.empty()) return;
    std::string msg = "invalid model configuration:";
    for (const auto& s : p) msg += "\n  - " + s;
    throw Error(msg);
}

int64_t ParamCounts::matmul() const
{
    // The head multiplies by the embedding matrix when tied.
    return attention + mlp + (lm_head > 0 ? lm_head : embedding);
}

ParamCounts count_params(const ModelConfig& c)
{
    ParamCounts n;
    const int64_t d = c.d_model;
    const int64_t norm_params = c.norm == NormType::layernorm ? 2 * d : d;
    n.embedding = int64_t(c.vocab_size) * d;
    n.attention = int64_t(c.n_layers) * (int64_t(c.qkv_dim()) * d + d * c.q_dim() +
                                         (c.qk_norm ? 2 * c.resolved_head_dim() : 0));
    n.mlp = int64_t(c.n_layers) * (int64_t(c.mlp_in_dim()) * d + d * c.ff_dim);
    n.norms = (2 * int64_t(c.n_layers) + 1) * norm_params;
    n.lm_head = c.tied_embeddings ? 0 : int64_t(c.vocab_size) * d;
    return n;
}

double training_flops_per_token(const ModelConfig& c, int seq_len)
{
    const ParamCounts n = count_params(c);
    return 6.0 * double(n.matmul()) + 6.0 * c.n_layers * double(seq_len) * c.q_dim();
}

nlohmann::json to_json(const ModelConfig& c)
{
    return {
        {"name", c.name},
        {"vocab_size", c.vocab_size},
        {"d_model", c.d_model},
        {"n_layers", c.n_layers},
        {"n_heads", c.n_heads},
        {"n_kv_heads", c.n_kv_heads},
        {"head_dim", c.resolved_head_dim()},
        {"ff_dim", c.ff_dim},
        {"seq_len", c.seq_len},
        {"rope_theta", c.rope_theta},
        {"norm_eps", c.norm_eps},
        {"norm", to_string(c.norm)},
        {"mlp", to_string(c.mlp)},
        {"qk_norm", c.qk_norm},
        {"tied_embeddings", c.tied_embeddings},
        {"init_std", c.init_std},
    };
}


ModelConfig model_config_from_json(const nlohmann::json& j)
{
    const JsonReader r(j, "model config",
                       {"name", "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "ff_dim",
                        "seq_len", "rope_theta", "norm_eps", "norm", "mlp", "qk_norm", "tied_embeddings", "init_std"});
    ModelConfig c;
    r.read("name", c.name);
    r.read("vocab_size", c.vocab_size);
    r.read("d_model", c.d_model);
    r.read("n_layers", c.n_layers);
    r.read("n_heads", c.n_heads);
    r.read("n_kv_heads", c.n_kv_heads);
    r.read("head_dim", c.head_dim);
    r.read("ff_dim", c.ff_dim);
    r.read("seq_len", c.seq_len);
    r.read("rope_theta", c.rope_theta);
    r.read("norm_eps", c.norm_eps);
    r.read("qk_norm", c.qk_norm);
    r.read("tied_embeddings", c.tied_embeddings);
    r.read("init_std", c.init_std);
    std::string norm = to_string(c.norm), mlp = to_string(c.mlp);
    r.read("norm", norm);
    r.read("mlp", mlp);
    if (norm == "rmsnorm") c.norm = NormType::rmsnorm;
    else if (norm == "layernorm") c.norm = NormType::layernorm;
    else throw Error("model config: norm must be \"rmsnorm\" or \"layernorm\", got \"" + norm + "\"");
    if (mlp == "swiglu") c.mlp = MlpType::swiglu;
    else if (mlp == "gelu") c.mlp = MlpType::gelu;
    else throw Error("model config: mlp must be \"swiglu\" or \"gelu\", got \"" + mlp + "\"");
    // A head_dim equal to the default is stored explicitly; keep it as "derived".
    if (c.head_dim != 0 && c.n_heads > 0 && c.head_dim * c.n_heads == c.d_model) c.head_dim = 0;
    return c;
}

std::vector<std::string> preset_names() { return {"nano", "micro", "small", "base", "large"}; }

ModelConfig preset(const std::string& name)
{
    auto text = embedded_resource("presets/" + name + ".json");
    if (!text) {
        std::string known;
        for (const auto& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
        throw Error("unknown preset \"" + name + "\"; choose one of " + known);
    }
    return model_config_from_json(nlohmann::json::parse(*text));
}

} // namespace crucible
