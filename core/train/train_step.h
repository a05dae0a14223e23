// The step: one optimizer update from a batch of micro-batches.
//
//   zero the gradients
//   for each of grad_accum micro-batches: forward + backward, the gradients
//       summing up, each token weighted 1 / (batch · seq_len · grad_accum)
//   one optimizer update at the scheduled rate (clipping is folded into it;
//       a non-finite gradient skips it)
//
// The halves are separate so that a caller can work between them: a
// data-parallel replica all-reduces its gradients after accumulate() and
// before update(); a fine-tune passes the adapters' store and optimizer.
// run() is both halves, timed, for one device.
#pragma once

#include "core/data/dataset.h"
#include "core/model/transformer.h"
#include "core/optim/optimizer.h"
#include "core/train/checkpoint.h"
#include "core/train/training_sink.h"

#include <cstdint>
#include <vector>

namespace crucible {

struct StepResult {
    LossSum loss;                  // summed over the micro-batches
    OptimizerStepInfo update;
    double lr_multiplier = 1.0;    // the schedule's, applied to every peak rate
    double seconds = 0.0;          // wall time with the device synchronized
    double comm_seconds = 0.0;     // of which exchanging gradients and weights between replicas
    // A finite loss and an applied update; otherwise nothing changed.
    bool applied() const;
};

// The share of a step that one data-parallel replica computes: of the
// world · grad_accum micro-batches a step draws, rank r takes
// r·grad_accum … (r+1)·grad_accum − 1, so the world together computes what
// one device computes with grad_accum · world micro-batches.
struct ReplicaShare {
    int rank = 0;
    int world = 1;
};

class TrainStep {
public:
    TrainStep(int batch, int seq_len, int grad_accum, ReplicaShare share = {});

    int batch() const { return m_batch; }
    int seq_len() const { return m_seq_len; }
    int grad_accum() const { return m_grad_accum; }

    // Zeroes `params`' gradients, then runs this replica's grad_accum
    // micro-batches from `batcher` through `model`, whose backward fills them
    // (each token weighted for the whole world's step). The batcher ends
    // where the step ends, on every replica.
    // `last_backward`: told, during the last micro-batch's backward, which
    // gradients are final (Transformer::set_gradients_ready).
    LossSum accumulate(ParamStore& params, Transformer& model, Batcher& batcher,
                       const Transformer::GradientsReady& last_backward = {});
    static OptimizerStepInfo update(Optimizer& optimizer, double lr_multiplier);

    StepResult run(ParamStore& params, Transformer& model, Batcher& batcher, Optimizer& optimizer,
                   double lr_multiplier);

private:
    int m_batch, m_seq_len, m_grad_accum;
    ReplicaShare m_share;
    float m_grad_scale;
    std::vector<int32_t> m_tokens, m_targets;
};

// Consecutive steps that were not applied. Each is retried with the next
// batch; a few in a row mean the run has diverged.
class DivergenceGuard {
public:
    enum class Verdict { applied, skipped, diverged };
    static constexpr int kMaxSkippedInARow = 3;

    Verdict judge(const StepResult& r);

private:
    int m_skipped_in_a_row = 0;
};

// The error that ends a diverged run: where, and what to change.
std::string divergence_message(int64_t failed_step, float peak_lr, const std::string& saved_checkpoint);

// Counts an applied step into the trainer state and measures it.
// `memory_bytes`: what the run holds on its device.
StepMetrics record_step(TrainerState& state, const StepResult& r, float peak_lr, const RunInfo& info,
                        int64_t memory_bytes);

} // namespace crucible
