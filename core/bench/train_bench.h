// Training throughput benchmark: full optimizer steps (forward, backward,
// clipping, optimizer) of a model on random tokens, timed after warm-up.
#pragma once

#include "core/bench/bench_table.h"
#include "core/model/model_config.h"
#include "core/optim/optimizer.h"
#include "kernels/backend_factory.h"

#include <functional>

namespace crucible {

struct TrainBenchOptions {
    ModelConfig model;
    int batch = 16;
    int seq = 0;                    // 0 = the model's seq_len
    int warmup_steps = 3;
    int timed_steps = 10;
    OptimizerConfig optimizer;
    BackendOptions backend;
    // Called before every step, warm-up included (a suite's cancellation
    // throws from here).
    std::function<void()> before_step;
};

struct TrainBenchResult {
    std::string device;
    Timing step;                    // ms per optimizer step
    double tokens_per_s = 0.0;      // at the median step time
    double mfu = 0.0;               // 0 when the device peak is unknown
    size_t engine_bytes = 0;        // parameters, gradients, optimizer, activations
    size_t weights_bytes = 0;       // of those: master and compute-dtype weights
    size_t gradients_bytes = 0;
    size_t optimizer_bytes = 0;
    size_t activations_bytes = 0;
    size_t device_bytes = 0;        // device memory taken by the run (CUDA: free memory before − after)
    size_t peak_rss_bytes = 0;      // process high-water mark (CPU runs)
};

TrainBenchResult run_train_bench(const TrainBenchOptions& options);

} // namespace crucible
