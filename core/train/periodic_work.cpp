#include "core/train/periodic_work.h"

#include "core/train/finetune.h"

#include "core/generate/recompute_generate.h"
#include "core/train/evaluate.h"

#include <chrono>

namespace fs = std::filesystem;

namespace crucible {

namespace {

bool every(int interval, int64_t step) { return interval > 0 && step % interval == 0; }

} // namespace

DueWork work_due_after(const TrainConfig& tc, int64_t step)
{
    const bool last = step == tc.steps;
    const int sample_every = tc.sample_every > 0 ? tc.sample_every : tc.eval_every;
    DueWork due;
    due.eval = last || every(tc.eval_every, step);
    due.sample = tc.sample_tokens > 0 && (last || every(sample_every, step));
    due.checkpoint = last || every(tc.checkpoint_every, step);
    return due;
}

bool target_reached(const TrainConfig& tc, const TrainerState& state)
{
    return tc.target_bits_per_byte > 0 && state.last_eval &&
           state.last_eval->bits_per_byte <= tc.target_bits_per_byte;
}

EvalMetrics evaluate_step(Transformer& model, const Dataset& data, const std::vector<Window>& windows,
                          const TrainConfig& tc, int seq_len, int64_t step, const std::function<bool()>& cancelled)
{
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const int batch = tc.batch_size;
    EvalMetrics e = evaluate_windows(model, data, windows, batch, seq_len, int64_t(tc.eval_batches) * batch, cancelled);
    e.step = step;
    e.elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();
    return e;
}

std::string draw_sample(Transformer& model, const Tokenizer& tokenizer, const TrainConfig& tc, int64_t step,
                        const std::function<bool()>& cancelled)
{
    SamplingConfig sc;
    sc.temperature = tc.sample_temperature;
    sc.top_k = 40;
    sc.seed = tc.seed + uint64_t(step);
    Sampler sampler(sc);
    std::vector<int32_t> ids = tokenizer.encode(tc.sample_prompt);
    if (ids.empty()) ids.push_back(tokenizer.bos_id());
    const size_t prompt_len = ids.size();
    generate_recompute(model, ids, tc.sample_tokens, sampler, [&](int32_t) { return !cancelled(); });
    return tokenizer.decode(std::vector<int32_t>(ids.begin() + std::ptrdiff_t(prompt_len), ids.end()));
}

void CheckpointWriter::resumed_from(const fs::path& dir, int64_t step)
{
    m_latest = dir.string();
    m_latest_step = step;
}

std::optional<fs::path> CheckpointWriter::write(const RunDirectory& run, const TrainerState& state,
                                                const ParamStore& params, const Tokenizer& tokenizer,
                                                const Optimizer* optimizer, const LoraAdapters* lora,
                                                const std::string& base, const OptimizerSnapshot* gathered)
{
    if (m_latest_step == state.step) return std::nullopt;
    const fs::path dir = run.checkpoint_dir(state.step);
    if (lora) save_finetune_checkpoint(dir, *lora, base, tokenizer, optimizer, &state);
    else if (gathered) save_checkpoint_snapshot(dir, params, tokenizer, gathered, &state);
    else save_checkpoint(dir, params, tokenizer, optimizer, &state);
    m_latest = dir.string();
    m_latest_step = state.step;
    return dir;
}

} // namespace crucible
