// Attention benchmark: causal self-attention forward and forward+backward
// throughput of the backend's flash kernels, and of the naive kernels (T×T
// scores in memory) where they fit, over head dims and sequence lengths at a
// fixed number of tokens per call. FLOPs are counted as FlashAttention
// reports them: 4·B·H·T²·D / 2 for the causal forward, 2.5× that for the
// backward.
#pragma once

#include "core/bench/bench_table.h"

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace crucible {

struct AttentionBenchOptions {
    std::vector<int> head_dims{64, 128};
    std::vector<int> seq_lens{1024, 2048, 4096, 8192};
    int64_t tokens = 32768;      // B·T of every call
    int64_t model_dim = 2048;    // H = model_dim / D (MHA: n_kv_heads = H)
    int warmup = 3;
    int repeats = 10;
    bool naive = true;           // also time the naive kernels where memory allows
    bool backward = true;        // also time forward+backward
    // Called before each row is measured ("D64 T1024", its index, the row
    // count): a CPU row can take many seconds, and a silent minute looks hung.
    std::function<void(const std::string& row, size_t index, size_t rows)> on_row;
};

// Rows "D<d> T<t>" with columns head_dim, seq, batch, heads, fwd_ms,
// fwd_tflops, fwdbwd_ms, fwdbwd_tflops, naive_fwd_tflops,
// naive_fwdbwd_tflops, speedup (flash over naive, forward+backward), and on a
// backend with a Hopper forward portable_/hopper_ fwd_tflops and fwdbwd_tflops
// (each flash forward forced).
// Unmeasured cells are NaN.
BenchTable run_attention_bench(Backend& backend, const AttentionBenchOptions& options = {});

} // namespace crucible
