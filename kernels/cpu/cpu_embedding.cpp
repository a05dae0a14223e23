// Embedding lookup and its backward.
//
// The backward scatters rows of dout into the table. Tokens repeat, so rows
// race if split by token; instead each thread owns a contiguous range of
// vocabulary rows and walks all tokens in order, adding only those in its
// range: no atomics, and every table row sums its tokens in token order
// whatever the thread count.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <cstring>

namespace crucible {

namespace {

void check_token_ids(const int32_t* ids, int64_t n, int64_t vocab)
{
    for (int64_t i = 0; i < n; ++i)
        CRUCIBLE_REQUIRE(ids[i] >= 0 && ids[i] < vocab, "token id " + std::to_string(ids[i]) +
                                                            " is outside the vocabulary of " + std::to_string(vocab));
}

} // namespace

void CpuBackend::do_embedding_forward(Tensor out, Tensor tokens, Tensor table)
{
    const int64_t n = tokens.numel(), vocab = table.rows(), dim = table.cols();
    const int32_t* ids = tokens.as<int32_t>();
    check_token_ids(ids, n, vocab);

    float* o = out.as<float>();
    const float* t = table.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n * dim > cpu::kParallelMinWork)
    for (int64_t i = 0; i < n; ++i)
        std::memcpy(o + i * dim, t + int64_t(ids[i]) * dim, size_t(dim) * sizeof(float));
}

void CpuBackend::do_embedding_backward(Tensor dtable, Tensor tokens, Tensor dout)
{
    const int64_t n = tokens.numel(), vocab = dtable.rows(), dim = dtable.cols();
    const int32_t* ids = tokens.as<int32_t>();
    check_token_ids(ids, n, vocab);

    float* dt = dtable.as<float>();
    const float* g = dout.as<float>();
    const int parts = m_threads;
#pragma omp parallel for num_threads(m_threads) schedule(static, 1) if (n * dim > cpu::kParallelMinWork)
    for (int part = 0; part < parts; ++part) {
        const cpu::Range owned = cpu::split_range(vocab, parts, part);
        for (int64_t i = 0; i < n; ++i) {
            const int64_t id = ids[i];
            if (id < owned.begin || id >= owned.end) continue;
            float* row = dt + id * dim;
            const float* src = g + i * dim;
            for (int64_t c = 0; c < dim; ++c) row[c] += src[c];
        }
    }
}

} // namespace crucible
