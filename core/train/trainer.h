// Trainer: owns one training run from set-up to the last checkpoint.
//
// It composes the stages, each its own unit that other ways of training reuse:
//
//   set-up            training_setup.h   configuration, device, data, model, resume
//   the step          train_step.h       micro-batches, accumulation, optimizer update
//   between steps     periodic_work.h    evaluation, text samples, checkpoints
//   reporting         run_reporter.h     metrics.jsonl and the TrainingSink
//
// run() runs on the caller's thread (the GUI's worker thread, the CLI's main
// thread); pause, resume and stop are atomic requests honoured between steps.
// run() never throws: a failure ends the run with outcome `failed` and a
// message that says what to change, and never leaves a half-written file
// behind. In a multi-process job every process runs it (see
// TrainerOptions::launch); a failed or killed process ends the others' runs
// with a message naming it.
#pragma once

#include "core/train/run_config.h"
#include "core/train/training_sink.h"
#include "kernels/net/process_launch.h"

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>

namespace crucible {

class RunReporter;

struct TrainerOptions {
    std::filesystem::path run_dir;
    bool resume = false;                 // continue the run in run_dir from its latest checkpoint
    std::filesystem::path cache_dir;     // tokenizer and token caches; empty = default_cache_dir()
    // When resuming: train on these replicas (its gpus, cpu_replicas and, when
    // not empty, device) instead of the run's own. The global batch changes
    // with the number of replicas.
    std::optional<TrainConfig> placement;
    // One process of a job launched per device (mpirun, torchrun): this
    // process trains one replica, in step with the others. Rank 0 alone
    // writes the run (config, checkpoints, metrics); the others only read it
    // when resuming, so across hosts the run folder must be on a file system
    // they all see at the same path.
    std::optional<ProcessLaunch> launch;
};

class Trainer {
public:
    // For a new run, `config` is the whole configuration and run_dir must not
    // hold a run yet. When resuming, the run's own config.json is used and only
    // `config.train.steps` (when larger) extends it.
    Trainer(RunConfig config, TrainerOptions options, TrainingSink* sink);

    RunSummary run();

    // Thread-safe requests, honoured between optimizer steps.
    void request_stop();
    void request_pause(bool paused);
    bool stop_requested() const { return m_stop.load(); }

private:
    struct Session;
    void set_up(Session& s);
    RunSummary train(Session& s);
    void evaluate(Session& s);
    void sample(Session& s);
    void checkpoint(Session& s);
    void wait_while_paused(RunReporter& reporter);

    RunConfig m_config;
    TrainerOptions m_options;
    TrainingSink* m_sink;
    TrainingSink m_null_sink;
    std::atomic<bool> m_stop{false};
    std::atomic<bool> m_pause{false};
    std::mutex m_pause_mutex;
    std::condition_variable m_pause_cv;
};

} // namespace crucible
