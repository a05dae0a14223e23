#include "core/train/trainer.h"

#include "core/optim/lr_schedule.h"
#include "core/train/periodic_work.h"
#include "core/train/replica_group.h"
#include "core/train/run_lock.h"
#include "core/train/run_recovery.h"
#include "core/train/train_step.h"
#include "core/train/training_setup.h"
#include "core/util/paths.h"
#include "kernels/error.h"

#include <optional>

namespace fs = std::filesystem;

namespace crucible {

// Everything one run holds. The lock is declared first so that it is held
// until everything else is gone; the device before the model allocated on it.
struct Trainer::Session {
    explicit Session(TrainingSink& sink) : reporter(sink) {}

    RunLock lock;
    RunReporter reporter;
    RunDirectory run{fs::path()};
    RunConfig config;
    int seq_len = 0;
    TrainingDevice device;
    std::optional<TrainingData> data;
    std::optional<Batcher> batcher;
    std::vector<Window> val_windows;
    TrainableModel model;
    std::unique_ptr<ReplicaGroup> replicas;   // data parallel: the other devices; after the model it copies
    TrainerState state;
    RunInfo info;
    CheckpointWriter checkpoints;
    bool writes = true;   // false on ranks other than 0 of a multi-process job
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

void Trainer::wait_while_paused(RunReporter& reporter)
{
    if (!m_pause.load()) return;
    reporter.paused(true);
    std::unique_lock lock(m_pause_mutex);
    m_pause_cv.wait(lock, [&] { return !m_pause.load() || m_stop.load(); });
    lock.unlock();
    reporter.paused(false);
}

RunSummary Trainer::run()
{
    Session s(*m_sink);
    RunSummary summary;
    try {
        set_up(s);
        summary = train(s);
    } catch (const Error& e) {
        summary.outcome = RunOutcome::failed;
        summary.error = e.what();
    } catch (const std::bad_alloc&) {
        summary.outcome = RunOutcome::failed;
        summary.error = "out of host memory: lower the batch size or sequence length, or choose a smaller model";
    } catch (const fs::filesystem_error& e) {
        summary.outcome = RunOutcome::failed;
        summary.error = "cannot write " + e.path1().string() + ": " + e.code().message() +
                        " (check the free space and permissions of the run folder)";
    } catch (const std::exception& e) {
        summary.outcome = RunOutcome::failed;
        summary.error = std::string("unexpected error: ") + e.what();
    }
    summary.steps = s.state.step;
    summary.elapsed_s = s.state.elapsed_s;
    summary.skipped_steps = s.state.skipped_steps;
    summary.checkpoint = s.checkpoints.latest();
    if (s.state.last_eval) {
        summary.last_eval = *s.state.last_eval;
        summary.has_eval = true;
    }
    s.reporter.finished(summary);
    return summary;
}

void Trainer::set_up(Session& s)
{
    if (m_options.run_dir.empty()) throw Error("no run directory given");
    s.run = RunDirectory(m_options.run_dir);
    const ProcessLaunch* launch = m_options.launch ? &*m_options.launch : nullptr;
    s.writes = !launch || launch->rank == 0;
    // Rank 0 creates a new run's folder; the others need not find it empty.
    s.config = s.writes || m_options.resume ? resolve_run_config(m_config, s.run, m_options.resume) : m_config;
    if (launch) {
        TrainConfig& tc = s.config.train;
        if (m_options.resume && m_options.placement) {
            if (!m_options.placement->device.empty()) tc.device = m_options.placement->device;
            tc.gpus = m_options.placement->gpus;
            tc.cpu_replicas = m_options.placement->cpu_replicas;
            tc.overlap_comm = m_options.placement->overlap_comm;
        }
        tc.processes = launch->world;
        tc.process_rank = launch->rank;
        tc.local_rank = launch->local_rank;
        s.config.validate();
    }
    if (m_options.resume && m_options.placement && !launch) {
        TrainConfig& tc = s.config.train;
        if (!m_options.placement->device.empty()) tc.device = m_options.placement->device;
        tc.gpus = m_options.placement->gpus;
        tc.cpu_replicas = m_options.placement->cpu_replicas;
        tc.overlap_comm = m_options.placement->overlap_comm;
        s.config.validate();
    }
    const ModelConfig& mc = s.config.model;
    const TrainConfig& tc = s.config.train;
    s.seq_len = tc.resolved_seq_len(mc);
    const fs::path cache = m_options.cache_dir.empty() ? default_cache_dir() : m_options.cache_dir;

    // A resumed run is locked, then cleaned and checked, before anything is
    // loaded. One stopped before its first checkpoint starts over from step 0
    // with its own configuration.
    std::optional<CheckpointToResume> resume_from;
    if (m_options.resume) {
        if (s.writes) s.lock = RunLock(s.run.root());
        if (!s.writes) {
        } else if (const uint64_t freed = remove_stale_staging(s.run); freed > 0)
            s.reporter.status("removed " + std::to_string(freed / 1024) + " KiB of unfinished writes");
        resume_from = find_checkpoint_to_resume(s.run);
        if (!resume_from) s.reporter.status("the run has no checkpoint yet: starting it over from step 0");
    }

    s.device = open_training_device(backend_options(tc), mc, tc.batch_size, s.seq_len,
                                    s.config.finetune ? &s.config.finetune->lora : nullptr,
                                    s.config.finetune && s.config.finetune->qlora, s.config.grad_checkpoint());
    std::error_code ec;
    const std::optional<fs::path> tokenizer_file = m_options.resume && fs::exists(s.run.tokenizer_file(), ec)
        ? std::optional(s.run.tokenizer_file()) : initial_tokenizer(s.config);
    s.data.emplace(load_training_data(s.config, s.seq_len, tokenizer_file, cache, s.reporter));
    s.batcher.emplace(s.data->dataset, s.seq_len, tc.seed);
    s.val_windows = s.data->dataset.val_windows(s.seq_len);

    s.reporter.status("allocating the model");
    // With several replicas each holds the optimizer state of its own share
    // of the parameters (ZeRO stage 1); rank 0's is the first.
    const std::optional<ParamRange> owned =
        tc.replicas() > 1 ? std::optional(shard_ranges(ParamLayout(mc), tc.replicas())[size_t(tc.process_rank)])
                          : std::nullopt;
    s.model = allocate_model(*s.device.backend, s.config, s.seq_len, owned);
    std::optional<fs::path> resumed;
    if (resume_from) {
        resumed = resume_from->dir;
        s.reporter.status("loading " + resume_from->dir.string());
        s.state = resume_from_checkpoint(resume_from->dir, s.model, *s.batcher, s.config);
        check_state_matches_folder(resume_from->dir, resume_from->step, s.state.step);
        s.checkpoints.resumed_from(resume_from->dir, s.state.step);
        check_steps_left(s.state, tc);
    } else if (s.writes) {
        if (!s.lock.held()) {
            fs::create_directories(s.run.root(), ec);
            s.lock = RunLock(s.run.root());
        }
        start_new_run(s.run, s.config, s.model, s.data->tokenizer);
    }
    if (tc.replicas() > 1) {
        s.reporter.status("opening " + std::to_string(tc.replicas()) + " data-parallel replicas");
        if (launch) s.reporter.status("joining the job as " + launch->describe());
        s.replicas = std::make_unique<ReplicaGroup>(s.config, s.seq_len, s.data->dataset, s.model,
                                                    *s.device.backend, *s.batcher, launch);
        s.replicas->align_with_leader(resumed);
    }
    if (s.writes) {
        truncate_metrics(s.run, s.state.step);
        s.reporter.open_log(s.run.metrics_file());
    }

    s.info = describe_run(s.run, s.config, s.seq_len, s.device, s.data->dataset, s.state.step);
    s.reporter.started(s.info, m_options.resume);
}

RunSummary Trainer::train(Session& s)
{
    const TrainConfig& tc = s.config.train;
    TrainableModel& m = s.model;
    TrainStep step(tc.batch_size, s.seq_len, tc.grad_accum);
    DivergenceGuard guard;
    RunSummary summary;

    s.reporter.phase(TrainerPhase::training);
    while (s.state.step < tc.steps) {
        wait_while_paused(s.reporter);
        // Across processes a stop asked of any of them stops them all, at the same step.
        if (s.replicas ? s.replicas->agree(m_stop.load()) : m_stop.load()) {
            m_stop = true;
            break;
        }

        const double lr_mult = lr_multiplier(tc.schedule, s.state.step, tc.steps);
        const StepResult r = s.replicas ? s.replicas->step(lr_mult)
                                        : step.run(m.trained(), *m.model, *s.batcher, *m.optimizer, lr_mult);
        const DivergenceGuard::Verdict verdict = guard.judge(r);
        if (verdict != DivergenceGuard::Verdict::applied) {
            ++s.state.skipped_steps;
            s.reporter.skipped_update(s.state.step + 1, s.state.skipped_steps);
        }
        const bool stop_here = verdict == DivergenceGuard::Verdict::skipped && tc.on_nonfinite == "stop";
        if (verdict == DivergenceGuard::Verdict::diverged || stop_here) {
            // The weights are still those of the last applied step: keep them,
            // unless they are no longer finite, which the writer refuses; the
            // message then names the last checkpoint that was written.
            try {
                checkpoint(s);
            } catch (const Error&) {
            }
            throw Error(divergence_message(s.state.step + 1, tc.optimizer.lr, s.checkpoints.latest()));
        }
        if (verdict == DivergenceGuard::Verdict::skipped) continue;   // the step is retried with the next batch

        // Measured each step, not estimated: what the device holds for the
        // run now (CUDA: the backend's live allocations; CPU: the process's
        // resident set). The estimate travels in RunInfo beside it.
        const int64_t memory_in_use = int64_t(s.device.backend->memory_info().used_bytes);
        const StepMetrics metrics = record_step(s.state, r, tc.optimizer.lr, s.info, memory_in_use);
        summary.final_loss = metrics.loss;
        s.reporter.step(metrics);

        const DueWork due = work_due_after(tc, s.state.step);
        if (due.eval && !m_stop.load() && s.writes) evaluate(s);
        // Only rank 0 evaluates: it tells the others whether the target is reached.
        const bool reached = due.eval && s.writes && target_reached(tc, s.state);
        if (due.eval && (s.replicas ? s.replicas->agree(reached) : reached)) {
            summary.reached_target = true;
            if (s.writes)
                s.reporter.target_reached(s.state.step, s.state.elapsed_s, s.state.last_eval->bits_per_byte);
            break;
        }
        if (due.sample && !m_stop.load() && s.writes) sample(s);
        if (due.checkpoint) checkpoint(s);
    }

    // Finished, reached the target or stopped: keep everything trained so far.
    checkpoint(s);
    summary.outcome = summary.reached_target || s.state.step >= tc.steps ? RunOutcome::finished : RunOutcome::stopped;
    return summary;
}

void Trainer::evaluate(Session& s)
{
    s.reporter.phase(TrainerPhase::evaluating);
    const EvalMetrics e = evaluate_step(*s.model.model, s.data->dataset, s.val_windows, s.config.train, s.seq_len,
                                        s.state.step, [&] { return m_stop.load(); });
    s.state.last_eval = e;
    s.reporter.eval(e);
}

void Trainer::sample(Session& s)
{
    const TrainConfig& tc = s.config.train;
    const std::string text =
        draw_sample(*s.model.model, s.data->tokenizer, tc, s.state.step, [&] { return m_stop.load(); });
    s.reporter.sample(s.state.step, tc.sample_prompt, text);
}

void Trainer::checkpoint(Session& s)
{
    s.state.batcher = s.batcher->state();
    if (s.checkpoints.written(s.state.step)) return;
    // Data parallel: each replica holds a share of the optimizer state.
    std::optional<OptimizerSnapshot> gathered;
    if (s.replicas) gathered = s.replicas->gather_optimizer_state();
    if (!s.writes) {
        // The others took part in the gather; rank 0 writes. Counted here too,
        // so that every rank skips the same checkpoints.
        s.checkpoints.resumed_from(s.run.root(), s.state.step);
        return;
    }
    const FinetuneConfig* ft = s.config.finetune ? &*s.config.finetune : nullptr;
    if (const auto dir = s.checkpoints.write(s.run, s.state, *s.model.params, s.data->tokenizer,
                                             s.model.optimizer.get(), s.model.lora.get(), ft ? ft->base : "",
                                             gathered ? &*gathered : nullptr))
        s.reporter.checkpoint(s.state.step, dir->string());
}

} // namespace crucible
