// RunReporter: the one way a training run reports. Every event goes to the
// TrainingSink (the GUI, the CLI) and, once the run directory exists, to
// metrics.jsonl (which the Runs page and `--resume` read back) — each in a
// fixed order, so the log and the live view always tell the same story.
#pragma once

#include "core/train/run_dir.h"
#include "core/train/training_sink.h"

#include <filesystem>
#include <memory>
#include <string>

namespace crucible {

class RunReporter {
public:
    explicit RunReporter(TrainingSink& sink) : m_sink(&sink) {}

    // Starts appending to metrics.jsonl. Until then events reach only the sink
    // (set-up writes nothing to the run directory before it can train).
    void open_log(const std::filesystem::path& metrics_file);
    bool has_log() const { return m_log != nullptr; }

    void status(const std::string& what);   // set-up progress; the sink only
    // The run enters a phase: on_status with its name (for people), then
    // on_phase (for views); the sink only.
    void phase(TrainerPhase phase);
    void paused(bool paused);               // the sink only
    void started(const RunInfo& info, bool resumed);
    void step(const StepMetrics& m);
    void eval(const EvalMetrics& e);
    void sample(int64_t step, const std::string& prompt, const std::string& text);
    void checkpoint(int64_t step, const std::string& path);
    // Optimizer step `step` (1-based) had a non-finite loss or gradient and was not applied.
    // `skipped`: how many updates the run has skipped so far, this one included.
    void skipped_update(int64_t step, int64_t skipped);
    // Validation reached TrainConfig::target_bits_per_byte; the log only.
    void target_reached(int64_t step, double elapsed_s, double bits_per_byte);
    // The last event of every run. Never throws: a log that cannot be written
    // any more must not hide the outcome from the sink.
    void finished(const RunSummary& summary);

private:
    TrainingSink* m_sink;
    std::unique_ptr<MetricsLog> m_log;
};

} // namespace crucible
