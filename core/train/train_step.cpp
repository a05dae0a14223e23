#include "core/train/train_step.h"

#include <chrono>
#include <cmath>

namespace crucible {

bool StepResult::applied() const
{
    return std::isfinite(loss.mean()) && !update.skipped;
}

TrainStep::TrainStep(int batch, int seq_len, int grad_accum, ReplicaShare share)
    : m_batch(batch),
      m_seq_len(seq_len),
      m_grad_accum(grad_accum),
      m_share(share),
      m_grad_scale(1.0f / float(int64_t(batch) * seq_len * grad_accum * share.world)),
      m_tokens(size_t(batch) * size_t(seq_len)),
      m_targets(m_tokens.size())
{
}

LossSum TrainStep::accumulate(ParamStore& params, Transformer& model, Batcher& batcher,
                              const Transformer::GradientsReady& last_backward)
{
    params.zero_grads();
    LossSum loss;
    const int64_t share_windows = int64_t(m_batch) * m_grad_accum;
    batcher.skip(share_windows * m_share.rank);
    for (int micro = 0; micro < m_grad_accum; ++micro) {
        batcher.next(m_batch, m_tokens.data(), m_targets.data());
        const bool last = micro == m_grad_accum - 1;
        if (last && last_backward) model.set_gradients_ready(last_backward);
        LossSum l;
        try {
            l = model.train_micro_batch(m_tokens.data(), m_targets.data(), m_batch, m_seq_len, m_grad_scale);
        } catch (...) {
            model.set_gradients_ready({});
            throw;
        }
        if (last && last_backward) model.set_gradients_ready({});
        loss.loss += l.loss;
        loss.tokens += l.tokens;
    }
    batcher.skip(share_windows * (m_share.world - 1 - m_share.rank));
    return loss;
}

OptimizerStepInfo TrainStep::update(Optimizer& optimizer, double lr_multiplier)
{
    return optimizer.step(lr_multiplier);
}

StepResult TrainStep::run(ParamStore& params, Transformer& model, Batcher& batcher, Optimizer& optimizer,
                          double lr_multiplier)
{
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    StepResult r;
    r.lr_multiplier = lr_multiplier;
    r.loss = accumulate(params, model, batcher);
    r.update = update(optimizer, lr_multiplier);
    params.backend().synchronize();
    r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    return r;
}

DivergenceGuard::Verdict DivergenceGuard::judge(const StepResult& r)
{
    if (r.applied()) {
        m_skipped_in_a_row = 0;
        return Verdict::applied;
    }
    return ++m_skipped_in_a_row >= kMaxSkippedInARow ? Verdict::diverged : Verdict::skipped;
}

std::string divergence_message(int64_t failed_step, float peak_lr, const std::string& saved_checkpoint)
{
    return "training diverged: the loss is not a finite number at step " + std::to_string(failed_step) +
           ". Lower the learning rate (now " + std::to_string(peak_lr) + ") or keep gradient clipping on; " +
           (saved_checkpoint.empty() ? std::string("no checkpoint holds finite weights yet")
                                     : "the last good weights are saved in " + saved_checkpoint);
}

StepMetrics record_step(TrainerState& state, const StepResult& r, float peak_lr, const RunInfo& info,
                        int64_t memory_bytes)
{
    state.step += 1;
    state.tokens_seen += r.loss.tokens;
    state.elapsed_s += r.seconds;
    StepMetrics m;
    m.step = state.step;
    m.loss = r.loss.mean();
    m.lr = peak_lr * r.lr_multiplier;
    m.grad_norm = r.update.grad_norm;
    m.tokens_per_s = double(r.loss.tokens) / r.seconds;
    m.mfu = info.peak_tflops > 0 ? m.tokens_per_s * info.flops_per_token / (info.peak_tflops * 1e12) : 0.0;
    m.memory_bytes = memory_bytes;
    m.comm_share = r.seconds > 0 ? r.comm_seconds / r.seconds : 0.0;
    m.elapsed_s = state.elapsed_s;
    m.tokens_seen = state.tokens_seen;
    return m;
}

} // namespace crucible
