// Rotary position embedding, half-split ("rotate half") as Hugging Face Llama.
//
// Pair (i, i + D/2) of a head turns by angle pos·theta^(-2i/D). Positions
// reach 10^5 during long generation, where a float angle would be off by
// several radians' worth of ulps, so the table is computed in double and
// rounded once. The table is cached across calls: training asks for the same
// positions in every layer of every step.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

namespace crucible {

namespace {

// Rotates the query and key heads of each token row of packed qkv in place;
// `inverse` turns the other way (the backward, since the rotation is orthogonal).
void rope_apply(float* qkv, const float* table, const AttentionShape& s, bool inverse, int threads)
{
    const int64_t n = s.tokens(), d = s.head_dim, half = d / 2, ld = s.qkv_dim();
    const int64_t heads = s.n_heads + s.n_kv_heads;   // value heads are not rotated
    const float sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for num_threads(threads) schedule(static) if (n * heads * d > cpu::kParallelMinWork)
    for (int64_t row = 0; row < n; ++row) {
        const int64_t t = row % s.seq;
        const float* cos_t = table + t * half;
        const float* sin_t = table + (s.seq + t) * half;
        for (int64_t h = 0; h < heads; ++h) {
            float* x = qkv + row * ld + h * d;
            float* y = x + half;
            for (int64_t i = 0; i < half; ++i) {
                const float a = x[i], b = y[i];
                const float sn = sign * sin_t[i];
                x[i] = a * cos_t[i] - b * sn;
                y[i] = b * cos_t[i] + a * sn;
            }
        }
    }
}

} // namespace

const float* CpuBackend::rope_table(int64_t pos_offset, int64_t seq, int64_t head_dim, float theta)
{
    const RopeKey key{pos_offset, seq, head_dim, theta};
    if (key.pos_offset == m_rope_key.pos_offset && key.seq == m_rope_key.seq &&
        key.head_dim == m_rope_key.head_dim && key.theta == m_rope_key.theta)
        return m_rope_table.data();
    const int64_t half = head_dim / 2;
    m_rope_table.resize(size_t(2 * seq * half));
    float* cos_table = m_rope_table.data();
    float* sin_table = cos_table + seq * half;
    for (int64_t i = 0; i < half; ++i) {
        const double inv_freq = std::pow(double(theta), -2.0 * double(i) / double(head_dim));
        for (int64_t t = 0; t < seq; ++t) {
            const double angle = double(pos_offset + t) * inv_freq;
            cos_table[t * half + i] = float(std::cos(angle));
            sin_table[t * half + i] = float(std::sin(angle));
        }
    }
    m_rope_key = key;
    return m_rope_table.data();
}

void CpuBackend::do_rope_forward(Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta)
{
    rope_apply(qkv.as<float>(), rope_table(pos_offset, s.seq, s.head_dim, theta), s, false, m_threads);
}

void CpuBackend::do_rope_backward(Tensor dqkv, const AttentionShape& s, int64_t pos_offset, float theta)
{
    rope_apply(dqkv.as<float>(), rope_table(pos_offset, s.seq, s.head_dim, theta), s, true, m_threads);
}

} // namespace crucible
