#include "core/train/export_run.h"

#include "core/io/file_util.h"
#include "core/io/gguf_export.h"
#include "core/io/gguf_lora_export.h"
#include "core/io/hf_export.h"
#include "core/io/hf_model_dir.h"
#include "core/io/peft_adapter.h"
#include "core/train/finetune.h"
#include "core/train/load_model.h"
#include "core/train/run_config.h"
#include "core/train/run_dir.h"
#include "kernels/error.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>

namespace crucible {

namespace {

namespace fs = std::filesystem;

// Where a fine-tune's adapter and its base are, for a fine-tune run, one of
// its checkpoints or a PEFT folder; nullopt for anything else.
struct AdapterSource {
    fs::path adapter, base;
};

std::optional<AdapterSource> find_adapter(const fs::path& path)
{
    auto finetune_base = [](const fs::path& root) -> std::optional<std::string> {
        if (is_hf_model_dir(root) || !RunDirectory(root).exists()) return std::nullopt;
        const RunConfig cfg = RunDirectory(root).read_config();
        if (!cfg.finetune) return std::nullopt;
        return cfg.finetune->base;
    };
    if (is_peft_adapter_dir(path)) {
        if (auto base = finetune_base(path.parent_path().parent_path())) return AdapterSource{path, *base};
        const auto j = nlohmann::json::parse(read_file(path / "adapter_config.json"), nullptr, false);
        const std::string base = j.is_object() ? j.value("base_model_name_or_path", std::string()) : std::string();
        if (base.empty() || !fs::exists(base))
            throw Error(path.string() + " is an adapter for \"" + base + "\", which is not a local model folder; the "
                        "export needs the base's shape");
        return AdapterSource{path, base};
    }
    if (auto base = finetune_base(path)) {
        const auto latest = RunDirectory(path).latest_checkpoint();
        if (!latest) throw Error("the fine-tune " + path.string() + " has no checkpoint yet; train it first");
        return AdapterSource{*latest, *base};
    }
    return std::nullopt;
}

ExportResult export_adapter(const AdapterSource& source, const ExportRequest& request)
{
    const BaseModel base = open_base_model(source.base);
    const PeftAdapterInfo info = read_peft_config(source.adapter, base.config);
    const auto backend = make_backend(BackendOptions{});
    LoraAdapters adapters(*backend, base.config, info.config, false);
    load_peft_weights(source.adapter, adapters);
    const gguf::TensorType type = parse_gguf_type(request.type.empty() ? "f32" : request.type);
    const GgufAdapterSummary s =
        export_gguf_lora(adapters, type, base.config.name + "-lora", request.out);
    char line[512];
    std::snprintf(line, sizeof line, "%s (GGUF LoRA adapter for %s, %d tensors, r %d, alpha %g, %.1f MB)",
                  request.out.c_str(), s.architecture.c_str(), s.tensors, info.config.rank, double(s.alpha),
                  double(s.bytes) / 1e6);
    return ExportResult{line, true};
}

} // namespace

ExportResult export_run(const std::filesystem::path& run, const ExportRequest& request)
{
    if (request.format != "gguf" && request.format != "hf")
        throw Error("the export format must be gguf (llama.cpp) or hf (Hugging Face transformers), not \"" +
                    request.format + "\"");
    if (request.out.empty()) throw Error("no output given for the export");
    if (request.format == "gguf" && !request.merged)
        if (const auto adapter = find_adapter(run)) return export_adapter(*adapter, request);
    const LoadedModel m = load_model(run, BackendOptions{});
    const std::vector<float> weights = m.params->download_master();
    char line[512];
    if (request.format == "gguf") {
        GgufExportOptions o;
        o.type = parse_gguf_type(request.type.empty() ? "f16" : request.type);
        o.name = m.config.name;
        if (m.tokenizer_config) {
            // A model from Hugging Face: its template, and BOS as LlamaTokenizer adds it (by default, yes).
            if (auto t = m.tokenizer_config->find("chat_template"); t != m.tokenizer_config->end() && t->is_string())
                o.chat_template = t->get<std::string>();
            const auto bos = m.tokenizer_config->find("add_bos_token");
            o.add_bos = bos == m.tokenizer_config->end() || !bos->is_boolean() || bos->get<bool>();
        }
        const GgufExportSummary s = export_gguf(m.config, m.tokenizer, weights, o, request.out);
        std::snprintf(line, sizeof line, "%s (GGUF %s, %d tensors, %d in %s, %.1f MB)", request.out.c_str(),
                      s.architecture.c_str(), s.tensors, s.in_chosen_type, gguf::to_string(o.type),
                      double(s.bytes) / 1e6);
    } else {
        HfExportOptions o;
        o.dtype = parse_hf_dtype(request.type.empty() ? "f32" : request.type);
        o.tokenizer_config = m.tokenizer_config;
        export_hf(m.config, m.tokenizer, weights, o, request.out);
        std::snprintf(line, sizeof line, "%s (%s, %s)", request.out.c_str(),
                      m.config.qk_norm ? "Qwen3ForCausalLM" : "LlamaForCausalLM", o.dtype.c_str());
    }
    return ExportResult{line, true};
}

} // namespace crucible
