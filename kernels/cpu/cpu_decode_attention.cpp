// Attention of new tokens over the KV cache (decode steps, prompt chunks after
// the first, speculative verification).
//
// One task per (row, query head): the query reads the keys of its KV head,
// contiguous in the cache ([slot, kv, position, dim]), up to its own
// position; scores, a max-shifted softmax and the weighted sum of values are
// plain vectorised loops. A decode step is a matrix-vector product per head,
// where BLAS calls would cost more than they save, and every task owns the
// output it writes, so there are no races and each sum runs in a fixed order
// whatever the thread count.
//
// Splitting a long cache across threads (split-K) would help a single
// sequence on a many-core machine; with rows × heads tasks the CPU is busy
// already for the batch sizes generation uses.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <omp.h>

#include <cstring>

namespace crucible {

void CpuBackend::do_attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                                     const AttentionShape& s)
{
    const int64_t rows = s.tokens(), heads = s.n_heads, kv_heads = s.n_kv_heads, d = s.head_dim;
    const int64_t capacity = k_cache.shape[2], group = s.group(), ld = s.qkv_dim(), ld_out = s.q_dim();
    const int32_t* pos = positions.as<int32_t>();
    int64_t longest = 0;   // keys read by the furthest row
    for (int64_t r = 0; r < rows; ++r) {
        CRUCIBLE_REQUIRE(pos[r] < capacity, "attention_decode: position " + std::to_string(pos[r]) +
                                                " is past the cache's " + std::to_string(capacity) + " positions");
        longest = std::max<int64_t>(longest, int64_t(pos[r]) + 1);
    }

    const float scale = float(1.0 / std::sqrt(double(d)));
    const size_t per_thread = (size_t(std::max<int64_t>(longest, 1)) + 15) / 16 * 16;
    float* scores_base = scratch(per_thread * size_t(m_threads));
    const float* q_all = qkv.as<float>();
    const float* keys_all = k_cache.as<float>();
    const float* values_all = v_cache.as<float>();
    float* o_all = out.as<float>();
    const int64_t tasks = rows * heads;
    const bool parallel = tasks > 1 && tasks * longest * d > cpu::kParallelMinWork;
#pragma omp parallel num_threads(m_threads) if (parallel)
    {
        float* scores = scores_base + per_thread * size_t(omp_get_thread_num());
#pragma omp for schedule(static)
        for (int64_t task = 0; task < tasks; ++task) {
            const int64_t row = task / heads, h = task % heads;
            float* o = o_all + row * ld_out + h * d;
            const int64_t p = pos[row];
            if (p < 0) {
                std::memset(o, 0, size_t(d) * sizeof(float));
                continue;
            }
            const int64_t b = row / s.seq, kv = h / group, keys = p + 1;
            const float* q = q_all + row * ld + h * d;
            const float* k = keys_all + (b * kv_heads + kv) * capacity * d;
            const float* v = values_all + (b * kv_heads + kv) * capacity * d;
            for (int64_t j = 0; j < keys; ++j) scores[j] = scale * cpu::dot(q, k + j * d, d);
            const float shift = cpu::max_of(scores, keys);
            const float inv_sum = 1.0f / cpu::exp_shifted_sum(scores, scores, shift, keys);
            std::memset(o, 0, size_t(d) * sizeof(float));
            for (int64_t j = 0; j < keys; ++j) {
                const float w = scores[j];
                const float* vj = v + j * d;
                for (int64_t i = 0; i < d; ++i) o[i] += w * vj[i];
            }
            for (int64_t i = 0; i < d; ++i) o[i] *= inv_sum;
        }
    }
}

} // namespace crucible
