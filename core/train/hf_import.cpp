#include "core/train/hf_import.h"

#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/safetensors.h"
#include "core/model/param_layout.h"
#include "core/train/checkpoint.h"
#include "core/train/run_dir.h"
#include "kernels/error.h"

namespace fs = std::filesystem;

namespace crucible {

ImportedRun import_hf_model(const fs::path& hf_dir, const fs::path& run_dir, const RunConfig& settings)
{
    std::error_code ec;
    if (fs::exists(run_dir, ec) && !(fs::is_directory(run_dir, ec) && fs::is_empty(run_dir, ec)))
        throw Error(run_dir.string() + " already exists and is not empty; choose another output folder");

    ImportedRun out;
    out.source = open_hf_model_dir(hf_dir);
    const HfModelDir& src = out.source;
    out.config = settings;
    out.config.model = src.config;
    fs::path source = fs::absolute(hf_dir).lexically_normal();
    if (source.filename().empty()) source = source.parent_path();   // "models/tiny/"
    out.config.model.name = source.filename().empty() ? "imported" : source.filename().string();
    out.config.validate();
    const Tokenizer tokenizer = src.load_tokenizer();

    AtomicDirectory staging(run_dir);
    const RunDirectory run(staging.staging());
    fs::create_directories(run.checkpoint_dir(0));
    run.write_config(out.config);
    tokenizer.save(run.tokenizer_file());
    if (src.tokenizer_config)
        write_file_atomic(run.root() / "tokenizer_config.json", src.tokenizer_config->dump(2) + "\n");

    // The weights as stored (no conversion, no loss), in Crucible's order,
    // one source file in memory at a time.
    const fs::path checkpoint = run.checkpoint_dir(0);
    const ParamLayout layout(src.config);
    SafetensorsWriter weights;
    weights.set_metadata("format", "pt");
    for (const fs::path& file : src.weight_files) {
        const SafetensorsReader reader(file);
        for (const ParamEntry& p : layout.entries()) {
            if (src.tensor_files.at(p.name) != file) continue;
            const SafetensorsEntry& e = *reader.find(p.name);
            weights.add(p.name, e.dtype, e.shape, reader.raw(e), size_t(e.end - e.begin));
        }
    }
    weights.write(checkpoint / "model.safetensors");
    write_file_atomic(checkpoint / "config.json",
                      to_hf_config(out.config.model, tokenizer.bos_id(), tokenizer.eos_id()).dump(2) + "\n");
    tokenizer.save(checkpoint / "tokenizer.model");
    if (src.tokenizer_config)
        write_file_atomic(checkpoint / "tokenizer_config.json", src.tokenizer_config->dump(2) + "\n");
    write_file_atomic(checkpoint / "trainer_state.json", to_json(TrainerState{}).dump(2) + "\n");

    MetricsLog(run.metrics_file())
        .append({{"type", "import"},
                 {"step", 0},
                 {"source", source.string()},
                 {"architecture", src.architecture},
                 {"dtype", src.weight_dtype}});
    staging.commit();
    out.checkpoint = RunDirectory(run_dir).checkpoint_dir(0);
    return out;
}

} // namespace crucible
