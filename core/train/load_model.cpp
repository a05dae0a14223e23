#include "core/train/load_model.h"

#include "core/io/file_util.h"
#include "core/io/hf_config.h"
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
    if (!where.run_root.empty()) {
        m.config = RunDirectory(where.run_root).read_config().model;
    } else {
        const fs::path cfg = where.checkpoint / "config.json";
        auto j = nlohmann::json::parse(read_file(cfg), nullptr, false);
        if (j.is_discarded()) throw Error(cfg.string() + " is not valid JSON; the checkpoint is corrupt");
        m.config = from_hf_config(j);
    }
    m.config.validate();
    m.tokenizer = Tokenizer::load(where.checkpoint / "tokenizer.model");
    if (m.tokenizer.vocab_size() != m.config.vocab_size)
        throw Error("the tokenizer in " + where.checkpoint.string() + " does not match the model's vocabulary");
    m.backend = make_backend(backend);
    m.params = std::make_unique<ParamStore>(*m.backend, m.config, false);
    load_weights(where.checkpoint, *m.params);
    if (fs::exists(where.checkpoint / "trainer_state.json")) m.step = load_trainer_state(where.checkpoint).step;
    return m;
}

} // namespace crucible
