// Softmax cross-entropy over rows of logits, in place.
//
// Per row: the max (for stability and the argmax), Σ exp(x − max) through the
// vectorised exp, lse = max + log Σ. With compute_grad the exponentials are
// stored in the row on the way and scaled into the gradient
// (softmax − onehot)·grad_scale, so each logit costs one exp. Rows with a
// negative target are ignored: loss 0, not correct, gradient 0.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <cstring>

namespace crucible {

namespace {

// Σ exp(x[i] − shift) without storing the terms.
float exp_sum(const float* x, float shift, int64_t n)
{
    float acc[cpu::kLanes] = {};
    int64_t i = 0;
    for (; i + cpu::kLanes <= n; i += cpu::kLanes)
        for (int l = 0; l < cpu::kLanes; ++l) acc[l] += cpu::exp_approx(x[i + l] - shift);
    float tail = 0.0f;
    for (; i < n; ++i) tail += cpu::exp_approx(x[i] - shift);
    return cpu::sum_lanes(acc) + tail;
}

// First index of the maximum (ties go to the lower id).
int64_t first_index_of(const float* x, float value, int64_t n)
{
    for (int64_t i = 0; i < n; ++i)
        if (x[i] == value) return i;
    return -1;
}

} // namespace

void CpuBackend::do_softmax_cross_entropy(Tensor losses, Tensor correct, Tensor logits, Tensor targets,
                                          float grad_scale, bool compute_grad)
{
    const int64_t rows = logits.rows(), vocab = logits.cols();
    const bool want_correct = !correct.empty();
    const int32_t* tgt = targets.as<int32_t>();
    for (int64_t r = 0; r < rows; ++r)
        CRUCIBLE_REQUIRE(tgt[r] < vocab, "target id " + std::to_string(tgt[r]) + " is outside the vocabulary of " +
                                             std::to_string(vocab));

    float* loss = losses.as<float>();
    float* x = logits.as<float>();
    int32_t* hits_i32 = want_correct && correct.dtype == DType::i32 ? correct.as<int32_t>() : nullptr;
    float* hits_f32 = want_correct && correct.dtype == DType::f32 ? correct.as<float>() : nullptr;
#pragma omp parallel for num_threads(m_threads) schedule(static) if (rows * vocab > cpu::kParallelMinWork)
    for (int64_t r = 0; r < rows; ++r) {
        float* row = x + r * vocab;
        const int32_t target = tgt[r];
        if (target < 0) {
            loss[r] = 0.0f;
            if (hits_i32) hits_i32[r] = 0;
            if (hits_f32) hits_f32[r] = 0.0f;
            if (compute_grad) std::memset(row, 0, size_t(vocab) * sizeof(float));
            continue;
        }
        const float max = cpu::max_of(row, vocab);
        if (hits_i32 || hits_f32) {
            const bool hit = first_index_of(row, max, vocab) == target;
            if (hits_i32) hits_i32[r] = hit ? 1 : 0;
            if (hits_f32) hits_f32[r] = hit ? 1.0f : 0.0f;
        }
        const float target_logit = row[target];
        if (compute_grad) {
            const float sum = cpu::exp_shifted_sum(row, row, max, vocab);
            loss[r] = max + std::log(sum) - target_logit;
            const float scale = grad_scale / sum;
            for (int64_t v = 0; v < vocab; ++v) row[v] *= scale;
            row[target] -= grad_scale;
        } else {
            loss[r] = max + std::log(exp_sum(row, max, vocab)) - target_logit;
        }
    }
}

} // namespace crucible
