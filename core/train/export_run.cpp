#include "core/train/export_run.h"

#include "core/io/gguf_export.h"
#include "core/io/hf_export.h"
#include "core/train/load_model.h"
#include "kernels/error.h"

#include <cstdio>

namespace crucible {

ExportResult export_run(const std::filesystem::path& run, const ExportRequest& request)
{
    if (request.format != "gguf" && request.format != "hf")
        throw Error("the export format must be gguf (llama.cpp) or hf (Hugging Face transformers), not \"" +
                    request.format + "\"");
    if (request.out.empty()) throw Error("no output given for the export");
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
    return ExportResult{line};
}

} // namespace crucible
