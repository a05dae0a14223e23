#include "core/train/trainer.h"

#include "core/data/dataset.h"
#include "core/data/tokenizer.h"
#include "core/generate/recompute_generate.h"
#include "core/io/file_util.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/train/checkpoint.h"
#include "core/train/evaluate.h"
#include "core/train/memory_estimate.h"
#include "core/train/run_dir.h"
#include "core/util/paths.h"
#include "kernels/backend_factory.h"
#include "kernels/error.h"

#include <chrono>
#include <cmath>
#include <memory>
#include <optional>

namespace fs = std::filesystem;

namespace crucible {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0)
{
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

nlohmann::json step_record(const StepMetrics& m)
{
    return {{"type", "step"},          {"step", m.step},           {"loss", m.loss},
            {"lr", m.lr},              {"grad_norm", m.grad_norm}, {"tokens_per_s", m.tokens_per_s},
            {"mfu", m.mfu},            {"memory_bytes", m.memory_bytes},
            {"elapsed_s", m.elapsed_s}, {"tokens_seen", m.tokens_seen}};
}

nlohmann::json eval_record(const EvalMetrics& e)
{
    return {{"type", "eval"},          {"step", e.step},          {"loss", e.loss},
            {"perplexity", e.perplexity}, {"accuracy", e.accuracy}, {"bits_per_byte", e.bits_per_byte},
            {"tokens", e.tokens},      {"elapsed_s", e.elapsed_s}};
}

// Consecutive non-finite losses tolerated (each skips its update) before the
// run is declared diverged.
constexpr int kMaxNonFiniteSteps = 3;

} // namespace

struct Trainer::Session {
    RunDirectory run{fs::path()};
    std::unique_ptr<MetricsLog> log;
    std::unique_ptr<Backend> backend;
    std::optional<Tokenizer> tokenizer;
    std::optional<Dataset> dataset;
    std::unique_ptr<ParamStore> params;
    std::unique_ptr<Optimizer> optimizer;
    std::unique_ptr<Transformer> model;
    std::unique_ptr<Batcher> batcher;
    std::vector<Window> val_windows;
    TrainerState state;
    int seq_len = 0;
    RunInfo info;
    std::string last_checkpoint;
    int64_t last_checkpoint_step = -1;
};

Trainer::Trainer(RunConfig config, TrainerOptions options, TrainingSink* sink)
    : m_config(std::move(config)), m_options(std::move(options)), m_sink(sink ? sink : &m_null_sink)
{
}

void Trainer::request_stop()
{
    m_stop = true;
    m_pause_cv.notify_all();
}

void Trainer::request_pause(bool paused)
{
    {
        std::lock_guard lock(m_pause_mutex);
        m_pause = paused;
    }
    m_pause_cv.notify_all();
}

void Trainer::wait_while_paused()
{
    if (!m_pause.load()) return;
    m_sink->on_paused(true);
    std::unique_lock lock(m_pause_mutex);
    m_pause_cv.wait(lock, [&] { return !m_pause.load() || m_stop.load(); });
    lock.unlock();
    m_sink->on_paused(false);
}

RunSummary Trainer::run()
{
    Session s;
    RunSummary summary;
    try {
        summary = run_session(s);
    } catch (const Error& e) {
        summary.outcome = RunOutcome::failed;
        summary.error = e.what();
    } catch (const std::bad_alloc&) {
        summary.outcome = RunOutcome::failed;
        summary.error = "out of host memory: lower the batch size or sequence length, or choose a smaller model";
    } catch (const std::exception& e) {
        summary.outcome = RunOutcome::failed;
        summary.error = std::string("unexpected error: ") + e.what();
    }
    summary.steps = s.state.step;
    summary.elapsed_s = s.state.elapsed_s;
    summary.checkpoint = s.last_checkpoint;
    if (s.state.last_eval) {
        summary.last_eval = *s.state.last_eval;
        summary.has_eval = true;
    }
    if (s.log) {
        nlohmann::json rec = {{"type", "finished"},
                              {"outcome", summary.outcome == RunOutcome::finished ? "finished"
                                          : summary.outcome == RunOutcome::stopped ? "stopped" : "failed"},
                              {"step", summary.steps},
                              {"elapsed_s", summary.elapsed_s}};
        if (!summary.error.empty()) rec["error"] = summary.error;
        try { s.log->append(rec); } catch (...) {}
    }
    m_sink->on_finished(summary);
    return summary;
}

RunSummary Trainer::run_session(Session& s)
{
    RunSummary summary;
    // ---- run directory and configuration ----------------------------------
    if (m_options.run_dir.empty()) throw Error("no run directory given");
    s.run = RunDirectory(m_options.run_dir);
    RunConfig cfg = m_config;
    if (m_options.resume) {
        if (!s.run.exists())
            throw Error(m_options.run_dir.string() + " is not a run to resume (no config.json); start a new run with --out");
        cfg = s.run.read_config();
        if (m_config.train.steps > cfg.train.steps) cfg.train.steps = m_config.train.steps;
    } else {
        std::error_code ec;
        if (fs::exists(m_options.run_dir, ec) && !fs::is_empty(m_options.run_dir, ec))
            throw Error(m_options.run_dir.string() +
                        " already exists and is not empty; choose another output folder or resume it");
    }
    cfg.validate();
    const ModelConfig& mc = cfg.model;
    const TrainConfig& tc = cfg.train;
    s.seq_len = tc.resolved_seq_len(mc);
    const fs::path cache = m_options.cache_dir.empty() ? default_cache_dir() : m_options.cache_dir;

    // ---- backend and memory check -----------------------------------------
    BackendOptions bo;
    bo.device = tc.device == "cuda" ? DeviceKind::cuda : DeviceKind::cpu;
    bo.threads = tc.threads;
    s.backend = make_backend(bo);
    const MemoryEstimate estimate = estimate_training_memory(mc, tc.batch_size, s.seq_len, s.backend->compute_dtype());
    check_fits(estimate, s.backend->memory_info().free_bytes, s.backend->name());

    // ---- data ------------------------------------------------------------------
    m_sink->on_status("reading the corpus");
    const Corpus corpus = cfg.data.paths.empty() ? Corpus::embedded_default() : Corpus::from_paths(
        std::vector<fs::path>(cfg.data.paths.begin(), cfg.data.paths.end()));
    if (m_options.resume) {
        s.tokenizer = Tokenizer::load(s.run.tokenizer_file());
    } else {
        m_sink->on_status("training the tokenizer (vocabulary " + std::to_string(mc.vocab_size) + ")");
        TokenizerOptions to;
        to.vocab_size = mc.vocab_size;
        to.threads = tc.threads;
        s.tokenizer = Tokenizer::train_cached(tokenizer_training_text(corpus, cfg.data.val_fraction), to,
                                              cache / "tokenizers");
    }
    if (s.tokenizer->vocab_size() != mc.vocab_size)
        throw Error("the tokenizer has " + std::to_string(s.tokenizer->vocab_size()) +
                    " tokens but the model expects " + std::to_string(mc.vocab_size));
    m_sink->on_status("tokenizing the corpus");
    s.dataset = Dataset::build(corpus, *s.tokenizer, cfg.data.val_fraction, cache / "tokens", s.seq_len);
    s.batcher = std::make_unique<Batcher>(*s.dataset, s.seq_len, tc.seed);
    s.val_windows = s.dataset->val_windows(s.seq_len);

    // ---- model and optimizer -------------------------------------------------
    m_sink->on_status("allocating the model");
    s.params = std::make_unique<ParamStore>(*s.backend, mc, true);
    s.optimizer = std::make_unique<Optimizer>(*s.params, tc.optimizer);
    s.model = std::make_unique<Transformer>(*s.params, tc.batch_size, s.seq_len, true);
    if (m_options.resume) {
        auto latest = s.run.latest_checkpoint();
        if (!latest) throw Error("the run in " + m_options.run_dir.string() + " has no complete checkpoint to resume from");
        m_sink->on_status("loading " + latest->string());
        load_weights(*latest, *s.params);
        // An imported model's first checkpoint has weights only: its training
        // starts with a fresh optimizer state.
        if (fs::exists(*latest / "optimizer.safetensors")) load_optimizer(*latest, *s.optimizer, *s.params);
        s.state = load_trainer_state(*latest);
        s.batcher->set_state(s.state.batcher);
        s.last_checkpoint = latest->string();
        s.last_checkpoint_step = s.state.step;
        if (s.state.step >= tc.steps)
            throw Error("the run already completed " + std::to_string(s.state.step) +
                        " steps; resume with a larger --steps to train further");
    } else {
        s.params->initialize(tc.seed);
        fs::create_directories(s.run.root());
        s.run.write_config(cfg);
        s.tokenizer->save(s.run.tokenizer_file());
    }
    s.log = std::make_unique<MetricsLog>(s.run.metrics_file());

    // ---- report the start ------------------------------------------------------
    const DeviceFacts facts = s.backend->facts();
    RunInfo& info = s.info;
    info.run_dir = s.run.root().string();
    info.device = s.backend->name();
    info.parameters = count_params(mc).total();
    info.train_tokens = s.dataset->train_tokens();
    info.val_tokens = s.dataset->val_tokens();
    info.tokens_per_step = tc.tokens_per_step(mc);
    info.start_step = s.state.step;
    info.total_steps = tc.steps;
    info.flops_per_token = training_flops_per_token(mc, s.seq_len);
    info.peak_tflops = facts.peak_tflops;
    info.estimated_memory_bytes = int64_t(estimate.total());
    m_sink->on_started(info);
    s.log->append({{"type", "start"},
                   {"step", s.state.step},
                   {"device", info.device},
                   {"parameters", info.parameters},
                   {"tokens_per_step", info.tokens_per_step},
                   {"resumed", m_options.resume}});

    const size_t memory_in_use =
        s.params->bytes() + s.optimizer->bytes() + s.model->activations().bytes();
    const int B = tc.batch_size, T = s.seq_len;
    std::vector<int32_t> tokens(size_t(B) * size_t(T)), targets(tokens.size());
    const float grad_scale = 1.0f / float(int64_t(B) * T * tc.grad_accum);
    int non_finite_steps = 0;

    auto write_checkpoint = [&]() {
        if (s.last_checkpoint_step == s.state.step) return;
        const fs::path dir = s.run.checkpoint_dir(s.state.step);
        s.state.batcher = s.batcher->state();
        save_checkpoint(dir, *s.params, *s.tokenizer, s.optimizer.get(), &s.state);
        s.last_checkpoint = dir.string();
        s.last_checkpoint_step = s.state.step;
        s.log->append({{"type", "checkpoint"}, {"step", s.state.step}, {"path", dir.string()}});
        m_sink->on_checkpoint(s.state.step, dir.string());
    };
    auto run_eval = [&]() {
        m_sink->on_status("evaluating");
        const auto t0 = Clock::now();
        EvalMetrics e = evaluate_windows(*s.model, *s.dataset, s.val_windows, B, T, int64_t(tc.eval_batches) * B,
                                         [&] { return m_stop.load(); });
        e.step = s.state.step;
        e.elapsed_s = seconds_since(t0);
        s.state.last_eval = e;
        s.log->append(eval_record(e));
        m_sink->on_eval(e);
    };
    auto run_sample = [&]() {
        if (tc.sample_tokens <= 0) return;
        SamplingConfig sc;
        sc.temperature = tc.sample_temperature;
        sc.top_k = 40;
        sc.seed = tc.seed + uint64_t(s.state.step);
        Sampler sampler(sc);
        std::vector<int32_t> ids = s.tokenizer->encode(tc.sample_prompt);
        if (ids.empty()) ids.push_back(s.tokenizer->bos_id());
        const size_t prompt_len = ids.size();
        generate_recompute(*s.model, ids, tc.sample_tokens, sampler, [&](int32_t) { return !m_stop.load(); });
        const std::string text = s.tokenizer->decode(std::vector<int32_t>(ids.begin() + std::ptrdiff_t(prompt_len), ids.end()));
        s.log->append({{"type", "sample"}, {"step", s.state.step}, {"prompt", tc.sample_prompt}, {"text", text}});
        m_sink->on_sample(s.state.step, tc.sample_prompt, text);
    };

    // ---- the step loop ---------------------------------------------------------
    m_sink->on_status("training");
    while (s.state.step < tc.steps) {
        wait_while_paused();
        if (m_stop.load()) break;

        const auto t0 = Clock::now();
        s.params->zero_grads();
        LossSum loss;
        for (int micro = 0; micro < tc.grad_accum; ++micro) {
            s.batcher->next(B, tokens.data(), targets.data());
            const LossSum l = s.model->train_micro_batch(tokens.data(), targets.data(), B, T, grad_scale);
            loss.loss += l.loss;
            loss.tokens += l.tokens;
        }
        const double lr_mult = lr_multiplier(tc.schedule, s.state.step, tc.steps);
        const OptimizerStepInfo step_info = s.optimizer->step(lr_mult);
        s.backend->synchronize();
        const double dt = seconds_since(t0);

        const double mean_loss = loss.mean();
        if (!std::isfinite(mean_loss) || step_info.skipped) {
            ++non_finite_steps;
            const std::string where = "at step " + std::to_string(s.state.step + 1);
            if (non_finite_steps >= kMaxNonFiniteSteps) {
                // The weights are still those of the last finite step: keep them.
                write_checkpoint();
                throw Error("training diverged: the loss is not a finite number " + where +
                            ". Lower the learning rate (now " + std::to_string(tc.optimizer.lr) +
                            ") or keep gradient clipping on; the last good weights are saved in " + s.last_checkpoint);
            }
            m_sink->on_warning("non-finite loss or gradient " + where + "; the update was skipped");
            s.log->append({{"type", "warning"}, {"step", s.state.step + 1}, {"message", "non-finite loss; update skipped"}});
            continue;   // the step is retried with the next batch
        }
        non_finite_steps = 0;

        s.state.step += 1;
        s.state.tokens_seen += loss.tokens;
        s.state.elapsed_s += dt;
        StepMetrics m;
        m.step = s.state.step;
        m.loss = mean_loss;
        m.lr = tc.optimizer.lr * lr_mult;
        m.grad_norm = step_info.grad_norm;
        m.tokens_per_s = double(loss.tokens) / dt;
        m.mfu = info.peak_tflops > 0 ? m.tokens_per_s * info.flops_per_token / (info.peak_tflops * 1e12) : 0.0;
        m.memory_bytes = int64_t(memory_in_use);
        m.elapsed_s = s.state.elapsed_s;
        m.tokens_seen = s.state.tokens_seen;
        summary.final_loss = mean_loss;
        s.log->append(step_record(m));
        m_sink->on_step(m);

        const bool last = s.state.step == tc.steps;
        const bool eval_now = last || (tc.eval_every > 0 && s.state.step % tc.eval_every == 0);
        if (eval_now && !m_stop.load()) run_eval();
        if (eval_now && tc.target_bits_per_byte > 0 && s.state.last_eval &&
            s.state.last_eval->bits_per_byte <= tc.target_bits_per_byte) {
            summary.reached_target = true;
            s.log->append({{"type", "target"}, {"step", s.state.step}, {"elapsed_s", s.state.elapsed_s},
                           {"bits_per_byte", s.state.last_eval->bits_per_byte}});
            break;
        }
        const int sample_every = tc.sample_every > 0 ? tc.sample_every : tc.eval_every;
        if (!m_stop.load() && (last || (sample_every > 0 && s.state.step % sample_every == 0))) run_sample();
        if (last || (tc.checkpoint_every > 0 && s.state.step % tc.checkpoint_every == 0)) write_checkpoint();
    }

    if (summary.reached_target) {
        write_checkpoint();
        summary.outcome = RunOutcome::finished;
    } else if (s.state.step < tc.steps) {
        // Stopped: keep everything trained so far.
        write_checkpoint();
        summary.outcome = RunOutcome::stopped;
    } else {
        write_checkpoint();
        summary.outcome = RunOutcome::finished;
    }
    return summary;
}

} // namespace crucible
