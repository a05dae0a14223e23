#include "core/train/load_model.h"

#include "core/io/file_util.h"
#include "core/io/hf_model_dir.h"
#include "core/io/peft_adapter.h"
#include "core/model/lora.h"
#include "core/model/nf4_base.h"
#include "core/train/finetune.h"
#include "core/train/run_config.h"
#include "core/train/checkpoint.h"
#include "core/train/run_dir.h"
#include "kernels/error.h"

namespace fs = std::filesystem;

namespace crucible {

LoadedModel load_model_with_adapter(const fs::path& base, const fs::path& adapter_dir, const BackendOptions& backend,
                                    bool nf4_base)
{
    LoadedModel m = load_model(base, backend);
    if (m.lora) throw Error(base.string() + " is itself a fine-tune; merge it first (crucible-cli merge)");
    if (nf4_base) {
        std::vector<float> w = m.params->download_master();
        nf4_round_trip_projections(m.params->layout(), w);
        m.params->upload_master(w);
        m.nf4_base = true;
    }
    const PeftAdapterInfo info = read_peft_config(adapter_dir, m.config);
    LoraAdapters adapters(*m.backend, m.config, info.config, false);
    load_peft_weights(adapter_dir, adapters);
    adapters.merge_into(*m.params);
    m.base = base;
    m.lora = info.config;
    m.checkpoint = adapter_dir;
    m.step = fs::exists(adapter_dir / "trainer_state.json") ? load_trainer_state(adapter_dir).step : 0;
    return m;
}

LoadedModel load_model(const fs::path& path, const BackendOptions& backend)
{
    // A fine-tune: its base, with the adapters of its latest (or the given) checkpoint.
    if (is_peft_adapter_dir(path)) {
        const fs::path root = path.parent_path().parent_path();
        if (RunDirectory(root).exists() && !is_hf_model_dir(root)) {
            const RunConfig cfg = RunDirectory(root).read_config();
            if (cfg.finetune) {
                LoadedModel m = load_model_with_adapter(cfg.finetune->base, path, backend, cfg.finetune->qlora);
                m.run_root = root;
                return m;
            }
        }
        // A PEFT folder from elsewhere: its base must be a local model.
        const auto j = nlohmann::json::parse(read_file(path / "adapter_config.json"), nullptr, false);
        const std::string base = j.is_object() ? j.value("base_model_name_or_path", std::string()) : std::string();
        if (base.empty() || !fs::exists(base))
            throw Error(path.string() + " is an adapter for \"" + base + "\", which is not a local model folder; "
                        "download the base and pass it with --base");
        return load_model_with_adapter(base, path, backend);
    }
    if (!is_hf_model_dir(path) && RunDirectory(path).exists()) {
        const RunConfig cfg = RunDirectory(path).read_config();
        if (cfg.finetune) {
            const auto latest = RunDirectory(path).latest_checkpoint();
            if (!latest) throw Error("the fine-tune " + path.string() + " has no checkpoint yet; train it first");
            LoadedModel m = load_model_with_adapter(cfg.finetune->base, *latest, backend, cfg.finetune->qlora);
            m.run_root = path;
            return m;
        }
    }
    const ResolvedCheckpoint where = resolve_checkpoint(path);
    LoadedModel m;
    m.run_root = where.run_root;
    m.checkpoint = where.checkpoint;
    if (where.run_root.empty()) {
        // A bare folder: a checkpoint copied out of its run, or a model from
        // Hugging Face (sharded or not, any of the dtypes it ships).
        const HfModelDir dir = open_hf_model_dir(where.checkpoint);
        m.config = dir.config;
        m.tokenizer = dir.load_tokenizer();
        m.backend = make_backend(backend);
        m.params = std::make_unique<ParamStore>(*m.backend, m.config, false);
        load_hf_weights(dir, *m.params);
        m.tokenizer_config = dir.tokenizer_config;
    } else {
        m.config = RunDirectory(where.run_root).read_config().model;
        m.config.validate();
        m.tokenizer = Tokenizer::load(where.checkpoint / "tokenizer.model");
        if (m.tokenizer.vocab_size() != m.config.vocab_size)
            throw Error("the tokenizer in " + where.checkpoint.string() + " does not match the model's vocabulary");
        m.backend = make_backend(backend);
        m.params = std::make_unique<ParamStore>(*m.backend, m.config, false);
        load_weights(where.checkpoint, *m.params);
        for (const fs::path& dir : {where.checkpoint, where.run_root}) {
            const fs::path file = dir / "tokenizer_config.json";
            if (!fs::exists(file)) continue;
            auto j = nlohmann::json::parse(read_file(file), nullptr, false);
            if (j.is_discarded() || !j.is_object()) throw Error(file.string() + " is not a JSON object; fix or remove it");
            m.tokenizer_config = std::move(j);
            break;
        }
    }
    if (fs::exists(where.checkpoint / "trainer_state.json")) m.step = load_trainer_state(where.checkpoint).step;
    return m;
}

} // namespace crucible
