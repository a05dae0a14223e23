#include "core/io/peft_adapter.h"

#include "core/io/file_util.h"
#include "core/io/safetensors.h"
#include "kernels/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace fs = std::filesystem;

namespace crucible {

bool is_peft_adapter_dir(const fs::path& dir)
{
    std::error_code ec;
    return fs::is_regular_file(dir / "adapter_config.json", ec);
}

namespace {

// 0.1f as 0.1 in the JSON, not 0.10000000149011612.
double shortest(float v) { return std::stod(std::to_string(double(v)).substr(0, 12)); }

} // namespace

nlohmann::json peft_adapter_config(const LoraConfig& c, const std::string& base)
{
    nlohmann::json init = true;
    if (c.init == LoraInit::gaussian) init = "gaussian";
    return {{"peft_type", "LORA"},
            {"task_type", "CAUSAL_LM"},
            {"base_model_name_or_path", base},
            {"r", c.rank},
            {"lora_alpha", shortest(c.alpha)},
            {"lora_dropout", shortest(c.dropout)},
            {"target_modules", c.targets},
            {"use_rslora", c.use_rslora},
            {"use_dora", false},
            {"init_lora_weights", init},
            {"bias", "none"},
            {"fan_in_fan_out", false},
            {"inference_mode", true},
            {"modules_to_save", nullptr},
            {"layers_to_transform", nullptr},
            {"rank_pattern", nlohmann::json::object()},
            {"alpha_pattern", nlohmann::json::object()},
            {"revision", nullptr}};
}

void write_peft_adapter(const fs::path& dir, const LoraAdapters& adapters, const std::string& base)
{
    write_file_atomic(dir / "adapter_config.json", peft_adapter_config(adapters.config(), base).dump(2) + "\n");
    SafetensorsWriter w;
    w.set_metadata("format", "pt");
    const int64_t r = adapters.config().rank;
    for (const LoraBlock& b : adapters.blocks()) {
        const std::vector<float> a = adapters.download_a(b), bb = adapters.download_b(b);
        w.add_f32(b.a->name, {r, b.in}, a.data());
        w.add_f32(b.b->name, {b.out, r}, bb.data());
    }
    w.write(dir / "adapter_model.safetensors");
}

PeftAdapterInfo read_peft_config(const fs::path& dir, const ModelConfig& base)
{
    const fs::path file = dir / "adapter_config.json";
    if (!fs::exists(file)) throw Error(dir.string() + " is not an adapter folder (no adapter_config.json)");
    const auto j = nlohmann::json::parse(read_file(file), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(file.string() + " is not a JSON object");
    auto refuse = [&](const std::string& why) { throw Error(file.string() + ": " + why); };
    auto str = [&](const char* key, const std::string& fallback) {
        auto it = j.find(key);
        if (it == j.end() || it->is_null()) return fallback;
        if (!it->is_string()) refuse(std::string("\"") + key + "\" must be a string");
        return it->get<std::string>();
    };
    if (str("peft_type", "") != "LORA") refuse("peft_type is \"" + str("peft_type", "") + "\"; only LORA adapters load");
    if (const std::string t = str("task_type", "CAUSAL_LM"); t != "CAUSAL_LM")
        refuse("task_type is \"" + t + "\"; only CAUSAL_LM adapters apply to a language model");
    if (const std::string b = str("bias", "none"); b != "none")
        refuse("bias \"" + b + "\" trains biases the base has not got; only bias \"none\" loads");
    auto is_set = [&](const char* key) {
        auto it = j.find(key);
        return it != j.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>()) &&
               !((it->is_object() || it->is_array()) && it->empty());
    };
    if (is_set("use_dora")) refuse("DoRA adapters (use_dora) are not supported");
    if (is_set("rank_pattern") || is_set("alpha_pattern"))
        refuse("per-module ranks or alphas (rank_pattern, alpha_pattern) are not supported");
    if (is_set("modules_to_save")) refuse("modules_to_save (fully trained extra modules) is not supported");
    if (is_set("layers_to_transform")) refuse("layers_to_transform (adapters on some layers only) is not supported");
    if (is_set("lora_bias")) refuse("lora_bias (a trained bias on B) is not supported");
    if (is_set("layer_replication")) refuse("layer_replication is not supported");
    if (is_set("trainable_token_indices")) refuse("trainable_token_indices (trained embedding rows) is not supported");
    if (is_set("fan_in_fan_out")) refuse("fan_in_fan_out is for GPT-2 style Conv1D weights, which LLaMA has not got");

    PeftAdapterInfo info;
    LoraConfig& c = info.config;
    try {
        c.rank = j.at("r").get<int>();
        c.alpha = j.value("lora_alpha", 8.0f);
        c.dropout = j.contains("lora_dropout") && !j["lora_dropout"].is_null() ? j["lora_dropout"].get<float>() : 0.0f;
        c.use_rslora = j.value("use_rslora", false);
        const auto& t = j.at("target_modules");
        if (t.is_string()) {
            const std::string spec = t.get<std::string>();
            if (spec != "all-linear") refuse("target_modules is the pattern \"" + spec + "\"; list the modules instead");
            c.targets = parse_lora_targets(spec, base);
        } else {
            c.targets.clear();
            for (const auto& m : t) c.targets.push_back(m.get<std::string>());
            // Layer order (PEFT stores a set, in any order).
            std::vector<std::string> ordered;
            for (const std::string& m : lora_module_names())
                if (std::find(c.targets.begin(), c.targets.end(), m) != c.targets.end()) ordered.push_back(m);
            for (const std::string& m : c.targets)
                if (std::find(ordered.begin(), ordered.end(), m) == ordered.end())
                    refuse("target module \"" + m + "\" is not a projection of a LLaMA-family model");
            c.targets = ordered;
        }
        if (auto it = j.find("init_lora_weights"); it != j.end() && it->is_string() && *it == "gaussian")
            c.init = LoraInit::gaussian;
    } catch (const nlohmann::json::exception& e) {
        refuse(std::string("missing or mistyped field: ") + e.what());
    }
    const auto problems = c.problems(base);
    if (!problems.empty()) refuse(problems.front());
    info.base_model_name_or_path = str("base_model_name_or_path", "");
    return info;
}

void load_peft_weights(const fs::path& dir, LoraAdapters& adapters)
{
    const fs::path file = dir / "adapter_model.safetensors";
    if (!fs::exists(file)) {
        if (fs::exists(dir / "adapter_model.bin"))
            throw Error(dir.string() + " holds adapter_model.bin (pickled); save it with safe_serialization=True");
        throw Error(dir.string() + " has no adapter_model.safetensors");
    }
    const SafetensorsReader reader(file);
    const int64_t r = adapters.config().rank;
    std::set<std::string> expected;
    std::vector<std::vector<float>> a, b;
    for (const LoraBlock& blk : adapters.blocks()) {
        for (const auto* e : {blk.a, blk.b}) {
            if (!reader.find(e->name))
                throw Error(file.string() + " has no tensor " + e->name + ": it was written for another base model "
                            "or other target modules");
            expected.insert(e->name);
        }
        a.emplace_back(size_t(r * blk.in));
        b.emplace_back(size_t(r * blk.out));
        reader.read_f32(blk.a->name, {r, blk.in}, a.back().data());
        reader.read_f32(blk.b->name, {blk.out, r}, b.back().data());
    }
    for (const SafetensorsEntry& e : reader.entries())
        if (!expected.count(e.name))
            throw Error(file.string() + " holds " + e.name + ", which this LoRA does not compute (only lora_A and "
                        "lora_B of the target projections load)");
    adapters.upload(a, b);
}

} // namespace crucible
