#include "core/bench/train_bench.h"

#include "core/model/transformer.h"
#include "core/util/rng.h"

#include <sys/resource.h>

namespace crucible {

TrainBenchResult run_train_bench(const TrainBenchOptions& o)
{
    o.model.validate();
    const int seq = o.seq > 0 ? o.seq : o.model.seq_len;
    auto backend = make_backend(o.backend);
    const MemoryInfo before = backend->memory_info();
    ParamStore params(*backend, o.model, true);
    params.initialize(1);
    Optimizer optimizer(params, o.optimizer);
    Transformer model(params, o.batch, seq, true);

    Rng rng(7);
    std::vector<int32_t> tokens(size_t(o.batch) * size_t(seq)), targets(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
        tokens[i] = int32_t(rng.below(uint64_t(o.model.vocab_size)));
        targets[i] = int32_t(rng.below(uint64_t(o.model.vocab_size)));
    }
    const float scale = 1.0f / float(tokens.size());
    auto step = [&] {
        if (o.before_step) o.before_step();
        params.zero_grads();
        model.train_micro_batch(tokens.data(), targets.data(), o.batch, seq, scale);
        optimizer.step(1.0);
    };

    TrainBenchResult r;
    r.device = backend->name();
    r.step = time_repeated(*backend, step, o.warmup_steps, o.timed_steps);
    r.tokens_per_s = double(tokens.size()) / (r.step.median_ms / 1e3);
    const double peak = backend->facts().peak_tflops;
    if (peak > 0) r.mfu = r.tokens_per_s * training_flops_per_token(o.model, seq) / (peak * 1e12);
    r.gradients_bytes = dtype_bytes(DType::f32, params.grads().numel());
    r.weights_bytes = params.bytes() - r.gradients_bytes;
    r.optimizer_bytes = optimizer.bytes();
    r.activations_bytes = model.activations().bytes();
    r.engine_bytes = params.bytes() + optimizer.bytes() + model.activations().bytes();
    const MemoryInfo after = backend->memory_info();
    r.device_bytes = before.free_bytes > after.free_bytes ? before.free_bytes - after.free_bytes : r.engine_bytes;
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    r.peak_rss_bytes = size_t(usage.ru_maxrss) * 1024;
    return r;
}

} // namespace crucible
