// LoraConfig: which projections of a base model get low-rank adapters, and
// their hyper-parameters, as PEFT's LoraConfig names them.
//
//   y = x·Wᵀ + scale · dropout(x)·Aᵀ·Bᵀ      A [r, in], B [out, r]
//   scale = alpha / r   (rsLoRA: alpha / √r)
//
// The base weight W stays frozen; only A and B train.
#pragma once

#include "core/model/model_config.h"

#include <nlohmann/json_fwd.hpp>

#include <string>
#include <vector>

namespace crucible {

// How A starts (B always starts at zero, so the adapted model starts equal
// to the base): PEFT's default, Kaiming-uniform with a = √5, which is
// U(-1/√in, 1/√in); or "gaussian", N(0, 1/r).
enum class LoraInit { kaiming_uniform, gaussian };

struct LoraConfig {
    int rank = 16;
    float alpha = 32.0f;
    float dropout = 0.0f;
    bool use_rslora = false;
    LoraInit init = LoraInit::kaiming_uniform;
    // Module names in PEFT's terms, in layer order: q_proj, k_proj, v_proj,
    // o_proj, gate_proj, up_proj, down_proj.
    std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};

    float scale() const;
    bool targets_module(const std::string& module) const;
    // Every problem with this configuration on `base`, each a sentence that
    // says what to change.
    std::vector<std::string> problems(const ModelConfig& base) const;
    void validate(const ModelConfig& base) const;   // throws Error listing problems()
};

// The seven projection names, in the order a layer applies them.
const std::vector<std::string>& lora_module_names();

// "attention" (q, k, v, o), "all-linear" (every projection the base has) or a
// comma-separated list of names, with or without "_proj" ("q,v" or
// "q_proj,v_proj"). Throws Error naming an unknown module.
std::vector<std::string> parse_lora_targets(const std::string& spec, const ModelConfig& base);

nlohmann::json to_json(const LoraConfig& c);
LoraConfig lora_config_from_json(const nlohmann::json& j);   // throws Error

} // namespace crucible
