#include "core/train/checkpoint.h"

#include "core/data/tokenizer.h"
#include "core/io/file_util.h"
#include "core/io/hf_config.h"
#include "core/io/safetensors.h"
#include "kernels/error.h"

#include <charconv>
#include <cmath>

namespace fs = std::filesystem;

namespace crucible {

namespace {

// The first tensor of `layout` with a value that is not a finite number, and
// how many such values the buffer holds.
struct NonFinite {
    int64_t count = 0;
    std::string first_tensor;
};
NonFinite find_non_finite(const ParamLayout& layout, const std::vector<float>& values)
{
    NonFinite nf;
    for (const ParamEntry& e : layout.entries()) {
        const float* p = values.data() + e.offset;
        int64_t bad = 0;
        for (int64_t i = 0; i < e.numel(); ++i) bad += !std::isfinite(p[i]);
        if (bad > 0 && nf.count == 0) nf.first_tensor = e.name;
        nf.count += bad;
    }
    return nf;
}

nlohmann::json eval_to_json(const EvalMetrics& e)
{
    return {{"step", e.step},         {"loss", e.loss},        {"perplexity", e.perplexity},
            {"accuracy", e.accuracy}, {"bits_per_byte", e.bits_per_byte}, {"tokens", e.tokens},
            {"elapsed_s", e.elapsed_s}};
}

// A whole number from a file a user may have edited: refused, not converted,
// when it is fractional or out of range (a double beyond int64 converts with
// undefined behaviour).
int64_t whole_number(const nlohmann::json& j, const char* key)
{
    const nlohmann::json& v = j.at(key);
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX)))
        throw Error(std::string("\"") + key + "\" must be a whole number, got " + v.dump());
    return v.get<int64_t>();
}

int64_t whole_number_or(const nlohmann::json& j, const char* key, int64_t fallback)
{
    return j.contains(key) ? whole_number(j, key) : fallback;
}

EvalMetrics eval_from_json(const nlohmann::json& j)
{
    EvalMetrics e;
    e.step = whole_number_or(j, "step", 0);
    e.loss = j.value("loss", 0.0);
    e.perplexity = j.value("perplexity", 0.0);
    e.accuracy = j.value("accuracy", 0.0);
    e.bits_per_byte = j.value("bits_per_byte", 0.0);
    e.tokens = whole_number_or(j, "tokens", 0);
    e.elapsed_s = j.value("elapsed_s", 0.0);
    return e;
}

} // namespace

nlohmann::json to_json(const TrainerState& s)
{
    nlohmann::json j = {{"format", "crucible-trainer-state-1"},
                        {"step", s.step},
                        {"tokens_seen", s.tokens_seen},
                        {"elapsed_s", s.elapsed_s},
                        {"skipped_steps", s.skipped_steps},
                        {"batcher", {{"epoch", s.batcher.epoch}, {"position", s.batcher.position}}}};
    if (s.last_eval) j["last_eval"] = eval_to_json(*s.last_eval);
    return j;
}

TrainerState trainer_state_from_json(const nlohmann::json& j)
{
    TrainerState s;
    try {
        if (!j.is_object()) throw Error("trainer state is not a JSON object");
        s.step = whole_number(j, "step");
        s.tokens_seen = whole_number_or(j, "tokens_seen", 0);
        s.elapsed_s = j.value("elapsed_s", 0.0);
        s.skipped_steps = whole_number_or(j, "skipped_steps", 0);
        s.batcher.epoch = whole_number(j.at("batcher"), "epoch");
        s.batcher.position = whole_number(j.at("batcher"), "position");
        if (j.contains("last_eval")) {
            if (!j["last_eval"].is_object()) throw Error("\"last_eval\" is not a JSON object");
            s.last_eval = eval_from_json(j["last_eval"]);
        }
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("trainer state is incomplete or invalid: ") + e.what());
    }
    if (s.step < 0 || s.tokens_seen < 0 || s.batcher.epoch < 0 || s.batcher.position < 0)
        throw Error("trainer state has a negative step, token count or data position");
    return s;
}

void save_checkpoint(const fs::path& dir, const ParamStore& params, const Tokenizer& tokenizer,
                     const Optimizer* optimizer, const TrainerState* state)
{
    if (!optimizer) {
        save_checkpoint_snapshot(dir, params, tokenizer, nullptr, state);
        return;
    }
    const OptimizerSnapshot snapshot = optimizer->snapshot();
    save_checkpoint_snapshot(dir, params, tokenizer, &snapshot, state);
}

void save_checkpoint_snapshot(const fs::path& dir, const ParamStore& params, const Tokenizer& tokenizer,
                              const OptimizerSnapshot* optimizer, const TrainerState* state)
{
    AtomicDirectory out(dir);
    const ParamLayout& layout = params.layout();

    const std::vector<float> weights = params.download_master();
    // A checkpoint is the state a user goes back to: never one that holds NaNs.
    if (const NonFinite nf = find_non_finite(layout, weights); nf.count > 0)
        throw Error("no checkpoint written at step " + std::to_string(state ? state->step : 0) + ": " +
                    std::to_string(nf.count) + " weights are not finite numbers (first in " + nf.first_tensor +
                    "); the training diverged");
    SafetensorsWriter model;
    model.set_metadata("format", "pt");
    for (const ParamEntry& e : layout.entries()) model.add_f32(e.name, e.dims(), weights.data() + e.offset);
    model.write(out.staging() / "model.safetensors");

    const nlohmann::json hf = to_hf_config(params.config(), tokenizer.bos_id(), tokenizer.eos_id());
    write_file_atomic(out.staging() / "config.json", hf.dump(2) + "\n");
    tokenizer.save(out.staging() / "tokenizer.model");

    if (optimizer) {
        CRUCIBLE_CHECK(optimizer->m.size() == size_t(layout.total()) && optimizer->v.size() == size_t(layout.total()),
                       "the optimizer state is not this model's");
        for (const std::vector<float>* moment : {&optimizer->m, &optimizer->v})
            if (const NonFinite nf = find_non_finite(layout, *moment); nf.count > 0)
                throw Error("no checkpoint written at step " + std::to_string(state ? state->step : 0) + ": " +
                            std::to_string(nf.count) + " optimizer moments are not finite numbers (first in " +
                            nf.first_tensor + "); the training diverged");
        const float* m = optimizer->m.data();
        const float* v = optimizer->v.data();
        SafetensorsWriter opt;
        opt.set_metadata("optimizer", to_string(optimizer->config.type));
        opt.set_metadata("steps", std::to_string(optimizer->steps));
        const bool muon = optimizer->config.type == OptimizerType::muon;
        for (const ParamEntry& e : layout.entries()) {
            if (muon && e.is_hidden_matrix()) {
                opt.add_f32("momentum." + e.name, e.dims(), m + e.offset);
            } else {
                opt.add_f32("exp_avg." + e.name, e.dims(), m + e.offset);
                opt.add_f32("exp_avg_sq." + e.name, e.dims(), v + e.offset);
            }
        }
        opt.write(out.staging() / "optimizer.safetensors");
    }
    // Written last: its presence marks the checkpoint complete.
    const TrainerState empty;
    write_file_atomic(out.staging() / "trainer_state.json", to_json(state ? *state : empty).dump(2) + "\n");
    out.commit();
}

void load_weights(const fs::path& dir, ParamStore& params)
{
    const fs::path file = dir / "model.safetensors";
    SafetensorsReader reader(file);
    const ParamLayout& layout = params.layout();
    std::vector<float> host(size_t(layout.total()), 0.0f);
    for (const ParamEntry& e : layout.entries()) {
        if (!reader.find(e.name))
            throw Error(file.string() + " has no tensor " + e.name +
                        ": it was written for a different model configuration");
        reader.read_f32(e.name, e.dims(), host.data() + e.offset);
    }
    if (const NonFinite nf = find_non_finite(layout, host); nf.count > 0)
        throw Error(file.string() + " holds " + std::to_string(nf.count) +
                    " weights that are not finite numbers (NaN or infinity, first in " + nf.first_tensor +
                    "); the checkpoint is damaged or was saved after the training diverged: use an earlier one");
    params.upload_master(host);
}

void load_optimizer(const fs::path& dir, Optimizer& optimizer, const ParamStore& params)
{
    optimizer.restore(read_optimizer_state(dir, params.layout(), optimizer.config()));
}

OptimizerSnapshot read_optimizer_state(const fs::path& dir, const ParamLayout& layout, const OptimizerConfig& config)
{
    const fs::path file = dir / "optimizer.safetensors";
    SafetensorsReader reader(file);
    const auto& meta = reader.metadata();
    const std::string type = to_string(config.type);
    if (auto it = meta.find("optimizer"); it != meta.end() && it->second != type)
        throw Error("the checkpoint in " + dir.string() + " was trained with " + it->second +
                    ", not " + type + "; resume with --optimizer " + it->second);
    const int64_t n = layout.total();
    OptimizerSnapshot s;
    s.config = config;
    s.m.assign(size_t(n), 0.0f);
    s.v.assign(size_t(n), 0.0f);
    const bool muon = config.type == OptimizerType::muon;
    for (const ParamEntry& e : layout.entries()) {
        if (muon && e.is_hidden_matrix()) {
            reader.read_f32("momentum." + e.name, e.dims(), s.m.data() + e.offset);
        } else {
            reader.read_f32("exp_avg." + e.name, e.dims(), s.m.data() + e.offset);
            reader.read_f32("exp_avg_sq." + e.name, e.dims(), s.v.data() + e.offset);
        }
    }
    for (const std::vector<float>* moment : {&s.m, &s.v})
        if (const NonFinite nf = find_non_finite(layout, *moment); nf.count > 0)
            throw Error(file.string() + " holds " + std::to_string(nf.count) +
                        " optimizer moments that are not finite numbers (first in " + nf.first_tensor +
                        "); resuming would spread them into the weights: resume from an earlier checkpoint");
    if (auto it = meta.find("steps"); it != meta.end()) {
        // The step count drives Adam's bias correction: a damaged one must not pass as zero.
        int64_t steps = -1;
        const char* end = it->second.data() + it->second.size();
        const auto [ptr, ec] = std::from_chars(it->second.data(), end, steps);
        if (ec != std::errc() || ptr != end || steps < 0)
            throw Error(file.string() + ": the optimizer's \"steps\" field is not a step count (\"" + it->second +
                        "\"); the checkpoint is damaged, resume from an earlier one");
        s.steps = steps;
    }
    return s;
}

TrainerState load_trainer_state(const fs::path& dir)
{
    const fs::path file = dir / "trainer_state.json";
    auto j = nlohmann::json::parse(read_file(file), nullptr, false);
    if (j.is_discarded()) throw Error(file.string() + " is not valid JSON; the checkpoint is corrupt");
    try {
        return trainer_state_from_json(j);
    } catch (const Error& e) {
        throw Error(file.string() + ": " + e.what());
    }
}

} // namespace crucible
