#include "core/train/finetune.h"

#include "core/io/file_util.h"
#include "core/io/hf_model_dir.h"
#include "core/io/peft_adapter.h"
#include "core/io/safetensors.h"
#include "core/train/run_config.h"
#include "core/train/run_dir.h"
#include "kernels/error.h"

namespace fs = std::filesystem;

namespace crucible {

BaseModel open_base_model(const fs::path& path)
{
    BaseModel b;
    std::error_code ec;
    b.path = fs::absolute(path, ec);
    if (ec || !fs::exists(b.path)) throw Error("the base model " + path.string() + " does not exist");
    const bool finetune_run =
        !is_hf_model_dir(b.path) && RunDirectory(b.path).exists() && RunDirectory(b.path).read_config().finetune;
    if (is_adapter_checkpoint(b.path) || finetune_run)
        throw Error(path.string() + " is a fine-tune, not a base model; merge it first (crucible-cli merge) and "
                                    "fine-tune the merged folder");
    const ResolvedCheckpoint where = resolve_checkpoint(b.path);
    b.weights = where.checkpoint;
    if (where.run_root.empty()) {
        const HfModelDir dir = open_hf_model_dir(where.checkpoint);
        b.hf_folder = true;
        b.config = dir.config;
        b.tokenizer_file = dir.tokenizer_file;
        b.tokenizer_config = dir.tokenizer_config;
    } else {
        b.config = RunDirectory(where.run_root).read_config().model;
        b.config.validate();
        b.tokenizer_file = where.checkpoint / "tokenizer.model";
        for (const fs::path& dir : {where.checkpoint, where.run_root}) {
            const fs::path file = dir / "tokenizer_config.json";
            if (!fs::exists(file)) continue;
            auto j = nlohmann::json::parse(read_file(file), nullptr, false);
            if (j.is_discarded() || !j.is_object()) throw Error(file.string() + " is not a JSON object; fix or remove it");
            b.tokenizer_config = std::move(j);
            break;
        }
    }
    if (!fs::exists(b.tokenizer_file))
        throw Error("the base model " + path.string() + " has no tokenizer.model (a SentencePiece tokenizer)");
    return b;
}

void load_base_weights(const BaseModel& base, ParamStore& params)
{
    if (base.hf_folder) load_hf_weights(open_hf_model_dir(base.weights), params);
    else load_weights(base.weights, params);
}

bool is_adapter_checkpoint(const fs::path& dir) { return is_peft_adapter_dir(dir); }

void save_finetune_checkpoint(const fs::path& dir, const LoraAdapters& adapters, const std::string& base,
                              const Tokenizer& tokenizer, const Optimizer* optimizer, const TrainerState* state)
{
    AtomicDirectory out(dir);
    write_peft_adapter(out.staging(), adapters, base);
    tokenizer.save(out.staging() / "tokenizer.model");
    if (optimizer) {
        const ParamStore& store = adapters.store();
        const int64_t n = store.layout().total();
        std::vector<float> m(static_cast<size_t>(n)), v(static_cast<size_t>(n));
        Backend& be = store.backend();
        be.download(m.data(), DType::f32, optimizer->first_moment());
        be.download(v.data(), DType::f32, optimizer->second_moment());
        SafetensorsWriter opt;
        opt.set_metadata("optimizer", to_string(optimizer->config().type));
        opt.set_metadata("steps", std::to_string(optimizer->steps_taken()));
        opt.set_metadata("dropout_calls", std::to_string(adapters.dropout_calls()));
        // Padded B̃ as the store holds it: the state resumes exactly.
        for (const ParamEntry& e : store.layout().entries()) {
            opt.add_f32("exp_avg." + e.name, e.dims(), m.data() + e.offset);
            opt.add_f32("exp_avg_sq." + e.name, e.dims(), v.data() + e.offset);
        }
        opt.write(out.staging() / "optimizer.safetensors");
    }
    const TrainerState empty;
    write_file_atomic(out.staging() / "trainer_state.json", to_json(state ? *state : empty).dump(2) + "\n");
    out.commit();
}

void load_finetune_checkpoint(const fs::path& dir, LoraAdapters& adapters, Optimizer* optimizer)
{
    load_peft_weights(dir, adapters);
    if (!optimizer || !fs::exists(dir / "optimizer.safetensors")) return;
    load_optimizer(dir, *optimizer, adapters.store());
    const SafetensorsReader reader(dir / "optimizer.safetensors", SafetensorsReader::Contents::header_only);
    if (auto it = reader.metadata().find("dropout_calls"); it != reader.metadata().end())
        adapters.set_dropout_calls(std::stoull(it->second));
}

} // namespace crucible
