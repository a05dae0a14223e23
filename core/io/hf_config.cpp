// config.json in the Hugging Face shape. Writing uses the LlamaForCausalLM (or
// Qwen3ForCausalLM) keys other tools expect, plus a "crucible" object for what
// those families cannot express; reading accepts both our files and plain HF
// configs, applying HF's defaults where a key is optional there.
#include "core/io/hf_config.h"

#include "kernels/error.h"

#include <charconv>
#include <cstdlib>
#include <set>

namespace crucible {

namespace {

using nlohmann::json;

// A float written as the shortest decimal that reads back as the same float,
// so config.json says 1e-05 rather than 9.999999747378752e-06.
double tidy(float value)
{
    char buf[32];
    const auto result = std::to_chars(buf, buf + sizeof buf, value);
    *result.ptr = '\0';
    return std::strtod(buf, nullptr);
}

[[noreturn]] void invalid(const std::string& problem)
{
    throw Error("config.json: " + problem);
}

const json* find_key(const json& j, const char* key)
{
    auto it = j.find(key);
    return it == j.end() || it->is_null() ? nullptr : &*it;
}

int read_int(const json& j, const char* key, const int* fallback)
{
    const json* v = find_key(j, key);
    if (!v) {
        if (fallback) return *fallback;
        invalid(std::string("\"") + key + "\" is missing; it is required to build the model");
    }
    if (!v->is_number_integer() || v->get<int64_t>() < INT32_MIN || v->get<int64_t>() > INT32_MAX)
        invalid(std::string("\"") + key + "\" must be an integer, got " + v->dump());
    return v->get<int>();
}

float read_float(const json& j, const char* key, float fallback)
{
    const json* v = find_key(j, key);
    if (!v) return fallback;
    if (!v->is_number()) invalid(std::string("\"") + key + "\" must be a number, got " + v->dump());
    return static_cast<float>(v->get<double>());
}

bool read_bool(const json& j, const char* key, bool fallback)
{
    const json* v = find_key(j, key);
    if (!v) return fallback;
    if (!v->is_boolean()) invalid(std::string("\"") + key + "\" must be true or false, got " + v->dump());
    return v->get<bool>();
}

std::string read_string(const json& j, const char* key, const std::string& fallback)
{
    const json* v = find_key(j, key);
    if (!v) return fallback;
    if (!v->is_string()) invalid(std::string("\"") + key + "\" must be a string, got " + v->dump());
    return v->get<std::string>();
}

// "llama" or "qwen3", from model_type or, failing that, architectures.
std::string model_family(const json& j)
{
    const std::string type = read_string(j, "model_type", "");
    if (type == "llama" || type == "qwen3") return type;
    if (!type.empty())
        invalid("model_type \"" + type + "\" is not supported; Crucible reads Llama and Qwen3 models");
    const json* arch = find_key(j, "architectures");
    if (arch && arch->is_array()) {
        for (const auto& a : *arch) {
            if (a == "LlamaForCausalLM") return "llama";
            if (a == "Qwen3ForCausalLM") return "qwen3";
        }
        invalid("architectures " + arch->dump() + " is not supported; Crucible reads LlamaForCausalLM and "
                "Qwen3ForCausalLM models");
    }
    invalid("neither \"model_type\" nor \"architectures\" says which model this is");
}

} // namespace

json to_hf_config(const ModelConfig& c, int bos_id, int eos_id)
{
    const bool qwen3 = c.qk_norm;
    json j = {
        {"architectures", {qwen3 ? "Qwen3ForCausalLM" : "LlamaForCausalLM"}},
        {"model_type", qwen3 ? "qwen3" : "llama"},
        {"vocab_size", c.vocab_size},
        {"hidden_size", c.d_model},
        {"intermediate_size", c.ff_dim},
        {"num_hidden_layers", c.n_layers},
        {"num_attention_heads", c.n_heads},
        {"num_key_value_heads", c.n_kv_heads},
        {"head_dim", c.resolved_head_dim()},
        {"max_position_embeddings", c.seq_len},
        {"rope_theta", tidy(c.rope_theta)},
        {"rms_norm_eps", tidy(c.norm_eps)},
        {"tie_word_embeddings", c.tied_embeddings},
        {"hidden_act", c.mlp == MlpType::swiglu ? "silu" : "gelu"},
        {"attention_bias", false},
        {"mlp_bias", false},
        {"bos_token_id", bos_id},
        {"eos_token_id", eos_id},
        {"torch_dtype", "float32"},
        {"initializer_range", tidy(c.init_std)},
        // What the HF families cannot say (LayerNorm, a plain GELU MLP) and our
        // own name for the configuration.
        {"crucible", {{"name", c.name}, {"norm", to_string(c.norm)}, {"mlp", to_string(c.mlp)}}},
    };
    return j;
}

ModelConfig from_hf_config(const json& j)
{
    if (!j.is_object()) invalid("the file must hold a JSON object");
    const std::string family = model_family(j);

    ModelConfig c;
    c.qk_norm = family == "qwen3";
    c.vocab_size = read_int(j, "vocab_size", nullptr);
    c.d_model = read_int(j, "hidden_size", nullptr);
    c.ff_dim = read_int(j, "intermediate_size", nullptr);
    c.n_layers = read_int(j, "num_hidden_layers", nullptr);
    c.n_heads = read_int(j, "num_attention_heads", nullptr);
    // HF's defaults for the optional keys: MHA, head_dim from the width,
    // 2048 positions, untied head.
    c.n_kv_heads = read_int(j, "num_key_value_heads", &c.n_heads);
    const int no_head_dim = 0;
    c.head_dim = read_int(j, "head_dim", &no_head_dim);
    if (c.head_dim < 0) invalid("\"head_dim\" must be positive, got " + std::to_string(c.head_dim));
    const int default_positions = 2048;
    c.seq_len = read_int(j, "max_position_embeddings", &default_positions);
    c.rope_theta = read_float(j, "rope_theta", 10000.0f);
    c.norm_eps = read_float(j, "rms_norm_eps", 1e-6f);
    c.tied_embeddings = read_bool(j, "tie_word_embeddings", false);
    c.init_std = read_float(j, "initializer_range", 0.02f);

    if (read_bool(j, "attention_bias", false) || read_bool(j, "mlp_bias", false))
        invalid("attention_bias and mlp_bias must be false; Crucible's projections have no biases");
    if (const json* scaling = find_key(j, "rope_scaling"))
        invalid("rope_scaling " + scaling->dump() + " is not supported; Crucible uses plain RoPE");

    const std::string act = read_string(j, "hidden_act", "silu");
    if (const json* ours = find_key(j, "crucible")) {
        if (!ours->is_object()) invalid("\"crucible\" must be an object");
        static const std::set<std::string> known = {"name", "norm", "mlp"};
        for (const auto& [key, value] : ours->items())
            if (!known.count(key)) invalid("unknown key \"crucible." + key + "\"");
        c.name = read_string(*ours, "name", c.name);
        const std::string norm = read_string(*ours, "norm", "rmsnorm");
        const std::string mlp = read_string(*ours, "mlp", act == "gelu" ? "gelu" : "swiglu");
        if (norm == "rmsnorm") c.norm = NormType::rmsnorm;
        else if (norm == "layernorm") c.norm = NormType::layernorm;
        else invalid("crucible.norm must be \"rmsnorm\" or \"layernorm\", got \"" + norm + "\"");
        if (mlp == "swiglu") c.mlp = MlpType::swiglu;
        else if (mlp == "gelu") c.mlp = MlpType::gelu;
        else invalid("crucible.mlp must be \"swiglu\" or \"gelu\", got \"" + mlp + "\"");
        const char* expected_act = c.mlp == MlpType::swiglu ? "silu" : "gelu";
        if (act != expected_act)
            invalid("hidden_act \"" + act + "\" contradicts crucible.mlp \"" + mlp + "\" (expected \"" +
                    expected_act + "\")");
    } else if (act != "silu") {
        // A plain Llama MLP is gated: act(gate)·up. Only SiLU (SwiGLU) is built in.
        invalid("hidden_act \"" + act + "\" is not supported for a gated Llama MLP; Crucible supports \"silu\"");
    }

    // head_dim equal to the derived value is stored as "derived", as presets do.
    if (c.head_dim != 0 && c.n_heads > 0 && int64_t(c.head_dim) * c.n_heads == c.d_model) c.head_dim = 0;

    const auto problems = c.problems();
    if (!problems.empty()) {
        std::string msg = "config.json describes a model Crucible cannot build:";
        for (const auto& p : problems) msg += "\n  - " + p;
        throw Error(msg);
    }
    return c;
}

} // namespace crucible
