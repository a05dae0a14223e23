// TrainingSink: how the trainer reports. The GUI adapts it to queued Qt
// signals, the CLI to a progress line and metrics.jsonl. Called on the
// trainer's thread; implementations must not block for long.
#pragma once

#include <cstdint>
#include <string>

namespace crucible {

struct RunInfo {
    std::string run_dir;
    std::string device;            // "cpu (2 threads)", "NVIDIA H200"
    int64_t parameters = 0;
    int64_t train_tokens = 0, val_tokens = 0;
    int64_t tokens_per_step = 0;
    int64_t start_step = 0;        // > 0 when resuming
    int64_t total_steps = 0;
    double flops_per_token = 0.0;
    double peak_tflops = 0.0;      // 0 when unknown (no MFU)
    int64_t estimated_memory_bytes = 0;
};

struct StepMetrics {
    int64_t step = 0;              // 1-based: optimizer steps done
    double loss = 0.0;             // mean train loss of this step, nats/token
    double lr = 0.0;               // AdamW peak × schedule
    double grad_norm = 0.0;        // before clipping
    double tokens_per_s = 0.0;     // this step
    double mfu = 0.0;              // fraction of the device's peak, 0 when unknown
    int64_t memory_bytes = 0;      // measured after the step: Backend::memory_info().used_bytes
    double comm_share = 0.0;       // fraction of the step spent exchanging gradients and weights (data parallel)
    double elapsed_s = 0.0;        // training time so far (excludes evaluation)
    int64_t tokens_seen = 0;
};

struct EvalMetrics {
    int64_t step = 0;
    double loss = 0.0;             // nats/token on the validation split
    double perplexity = 0.0;
    double accuracy = 0.0;         // next-token top-1
    double bits_per_byte = 0.0;
    int64_t tokens = 0;            // validation tokens evaluated
    double elapsed_s = 0.0;
};

// What a run is doing. Views switch on this, never on the status text.
enum class TrainerPhase {
    setting_up,   // from the start until the first step (on_status says what)
    training,     // optimizer steps
    evaluating,   // a validation pass between steps
};
inline const char* to_string(TrainerPhase p)
{
    return p == TrainerPhase::setting_up ? "setting up" : p == TrainerPhase::training ? "training" : "evaluating";
}

enum class RunOutcome { finished, stopped, failed };
inline const char* to_string(RunOutcome o)
{
    return o == RunOutcome::finished ? "finished" : o == RunOutcome::stopped ? "stopped" : "failed";
}

struct RunSummary {
    RunOutcome outcome = RunOutcome::finished;
    int64_t steps = 0;
    double final_loss = 0.0;
    EvalMetrics last_eval;
    bool has_eval = false;
    double elapsed_s = 0.0;
    bool reached_target = false;   // TrainConfig::target_bits_per_byte was reached
    std::string checkpoint;        // last checkpoint written, if any
    int64_t skipped_steps = 0;     // updates skipped for a non-finite loss or gradient
    std::string error;             // when failed
};

class TrainingSink {
public:
    virtual ~TrainingSink() = default;
    virtual void on_started(const RunInfo&) {}
    virtual void on_status(const std::string& /*what*/) {}   // "training tokenizer...", setup progress
    virtual void on_phase(TrainerPhase) {}                   // after the on_status that names it
    virtual void on_step(const StepMetrics&) {}
    virtual void on_eval(const EvalMetrics&) {}
    virtual void on_sample(int64_t /*step*/, const std::string& /*prompt*/, const std::string& /*text*/) {}
    virtual void on_checkpoint(int64_t /*step*/, const std::string& /*path*/) {}
    virtual void on_warning(const std::string& /*message*/) {}
    virtual void on_paused(bool /*paused*/) {}
    virtual void on_finished(const RunSummary&) {}
};

} // namespace crucible
