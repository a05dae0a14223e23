// Greedy choice over rows of logits (Backend::argmax_rows): the largest logit
// of each row, the lowest id among equals, and its softmax probability from
// a log-sum-exp in double.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <cmath>

namespace crucible {

void CpuBackend::do_argmax_rows(Tensor ids, Tensor probs, Tensor logits, Tensor next_tokens)
{
    const int64_t rows = logits.shape[0], vocab = logits.shape[1];
    const float* l = logits.as<float>();
    for (int64_t r = 0; r < rows; ++r) {
        const float* row = l + r * vocab;
        int64_t best = 0;
        for (int64_t i = 1; i < vocab; ++i)
            if (row[i] > row[best]) best = i;
        double sum = 0.0;
        for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(row[i]) - double(row[best]));
        ids.as<int32_t>()[r] = int32_t(best);
        probs.as<float>()[r] = float(1.0 / sum);
        if (!next_tokens.empty()) next_tokens.as<int32_t>()[r] = int32_t(best);
    }
}

} // namespace crucible
