#include "core/train/load_model.h"

#include "core/io/file_util.h"
#include "core/io/hf_model_dir.h"
#include "core/train/checkpoint.h"
#include "core/train/run_dir.h"
#include "kernels/error.h"

namespace fs = std::filesystem;

namespace crucible {

LoadedModel load_model(const fs::path& path, const BackendOptions& backend)
{
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
