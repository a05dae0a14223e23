#include "core/model/lora_config.h"

#include "core/util/json_read.h"
#include "kernels/error.h"

#include <algorithm>
#include <cmath>

namespace crucible {

const std::vector<std::string>& lora_module_names()
{
    static const std::vector<std::string> names = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                   "gate_proj", "up_proj", "down_proj"};
    return names;
}

float LoraConfig::scale() const
{
    return use_rslora ? alpha / std::sqrt(float(rank)) : alpha / float(rank);
}

bool LoraConfig::targets_module(const std::string& module) const
{
    return std::find(targets.begin(), targets.end(), module) != targets.end();
}

std::vector<std::string> LoraConfig::problems(const ModelConfig& base) const
{
    std::vector<std::string> p;
    const int smallest = std::min({base.d_model, base.q_dim(), base.kv_dim(), base.ff_dim});
    if (rank < 1 || rank > smallest)
        p.push_back("LoRA rank " + std::to_string(rank) + " must be between 1 and " + std::to_string(smallest) +
                    " (the smallest projection dimension of the base model)");
    if (!(alpha > 0.0f) || !std::isfinite(alpha)) p.push_back("LoRA alpha must be a positive number");
    if (!(dropout >= 0.0f && dropout < 1.0f)) p.push_back("LoRA dropout must be at least 0 and below 1");
    if (targets.empty()) p.push_back("LoRA needs at least one target module (e.g. attention or all-linear)");
    for (const std::string& t : targets) {
        if (std::find(lora_module_names().begin(), lora_module_names().end(), t) == lora_module_names().end())
            p.push_back("unknown LoRA target module \"" + t + "\"; choose from q_proj, k_proj, v_proj, o_proj, "
                        "gate_proj, up_proj, down_proj");
        else if (t == "gate_proj" && base.mlp != MlpType::swiglu)
            p.push_back("the base model's GELU MLP has no gate_proj to adapt; leave it out of the targets");
        if (std::count(targets.begin(), targets.end(), t) > 1)
            p.push_back("LoRA target module \"" + t + "\" is listed twice");
    }
    return p;
}

void LoraConfig::validate(const ModelConfig& base) const
{
    const auto p = problems(base);
    if (p.empty()) return;
    std::string msg = "invalid LoRA settings:";
    for (const auto& s : p) msg += "\n  - " + s;
    throw Error(msg);
}

std::vector<std::string> parse_lora_targets(const std::string& spec, const ModelConfig& base)
{
    if (spec == "attention") return {"q_proj", "k_proj", "v_proj", "o_proj"};
    if (spec == "all-linear") {
        std::vector<std::string> all;
        for (const std::string& m : lora_module_names())
            if (m != "gate_proj" || base.mlp == MlpType::swiglu) all.push_back(m);
        return all;
    }
    std::vector<std::string> picked;
    size_t start = 0;
    while (start <= spec.size()) {
        const size_t comma = std::min(spec.find(',', start), spec.size());
        std::string name = spec.substr(start, comma - start);
        start = comma + 1;
        if (name.empty()) continue;
        if (name.find("_proj") == std::string::npos) name += "_proj";
        if (std::find(lora_module_names().begin(), lora_module_names().end(), name) == lora_module_names().end())
            throw Error("unknown LoRA target \"" + name + "\"; use attention, all-linear or a list of q, k, v, o, "
                        "gate, up, down");
        if (std::find(picked.begin(), picked.end(), name) == picked.end()) picked.push_back(name);
    }
    if (picked.empty()) throw Error("no LoRA targets given; use attention, all-linear or a list such as q,v");
    // Layer order, whatever order they were listed in.
    std::vector<std::string> ordered;
    for (const std::string& m : lora_module_names())
        if (std::find(picked.begin(), picked.end(), m) != picked.end()) ordered.push_back(m);
    return ordered;
}

nlohmann::json to_json(const LoraConfig& c)
{
    return {{"rank", c.rank},
            {"alpha", c.alpha},
            {"dropout", c.dropout},
            {"use_rslora", c.use_rslora},
            {"init", c.init == LoraInit::gaussian ? "gaussian" : "kaiming_uniform"},
            {"targets", c.targets}};
}

LoraConfig lora_config_from_json(const nlohmann::json& j)
{
    LoraConfig c;
    JsonReader r(j, "lora", {"rank", "alpha", "dropout", "use_rslora", "init", "targets"});
    r.read("rank", c.rank);
    r.read("alpha", c.alpha);
    r.read("dropout", c.dropout);
    r.read("use_rslora", c.use_rslora);
    std::string init = "kaiming_uniform";
    r.read("init", init);
    if (init == "gaussian") c.init = LoraInit::gaussian;
    else if (init == "kaiming_uniform") c.init = LoraInit::kaiming_uniform;
    else throw Error("lora: \"init\" must be kaiming_uniform or gaussian, not \"" + init + "\"");
    r.read("targets", c.targets);
    return c;
}

} // namespace crucible
