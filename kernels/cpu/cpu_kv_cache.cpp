// Generation ops that feed the KV cache: RoPE at per-row positions and the
// copy of each new token's keys and values into its sequence's cache slot.
//
// Rows carry their own positions (negative = padding), so one call serves a
// batch of sequences that sit at different lengths: a prompt chunk, a decode
// step of one token each, or a speculative verification chunk.
//
// The cos/sin table covers positions 0..N and grows geometrically, so a
// decode loop whose position rises by one per step rebuilds it rarely. Its
// entries are computed exactly as rope_forward's (angle in double, rounded
// once), so a token rotated here equals the same token rotated by the
// training path bit for bit.
#include "kernels/cpu/cpu_backend.h"

#include "kernels/cpu/cpu_kernels.h"

#include <cstring>

namespace crucible {

namespace {

// The largest of the positions i32 [B·T] (−1 when every row is padding).
int64_t largest_position(const Tensor& positions, const AttentionShape& s)
{
    const int32_t* pos = positions.as<int32_t>();
    int64_t largest = -1;
    for (int64_t r = 0; r < s.tokens(); ++r) largest = std::max<int64_t>(largest, pos[r]);
    return largest;
}

} // namespace

const float* CpuBackend::rope_table_at(int64_t positions, int64_t head_dim, float theta)
{
    RopeAtKey& key = m_rope_at_key;
    const bool same_rotation = key.head_dim == head_dim && key.theta == theta;
    if (same_rotation && key.positions >= positions) return m_rope_table_at.data();
    const int64_t capacity = std::max<int64_t>({positions, same_rotation ? 2 * key.positions : 0, 256});
    const int64_t half = head_dim / 2;
    m_rope_table_at.resize(size_t(2 * capacity * half));
    float* cos_table = m_rope_table_at.data();
    float* sin_table = cos_table + capacity * half;
    for (int64_t i = 0; i < half; ++i) {
        const double inv_freq = std::pow(double(theta), -2.0 * double(i) / double(head_dim));
        for (int64_t t = 0; t < capacity; ++t) {
            const double angle = double(t) * inv_freq;
            cos_table[t * half + i] = float(std::cos(angle));
            sin_table[t * half + i] = float(std::sin(angle));
        }
    }
    key = RopeAtKey{capacity, head_dim, theta};
    return m_rope_table_at.data();
}

void CpuBackend::do_rope_forward_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta)
{
    const int64_t largest = largest_position(positions, s);
    if (largest < 0) return;
    const int64_t n = s.tokens(), d = s.head_dim, half = d / 2, ld = s.qkv_dim();
    const int64_t heads = s.n_heads + s.n_kv_heads;   // value heads are not rotated
    const float* table = rope_table_at(largest + 1, d, theta);
    const int64_t capacity = m_rope_at_key.positions;
    const int32_t* pos = positions.as<int32_t>();
    float* data = qkv.as<float>();
#pragma omp parallel for num_threads(m_threads) schedule(static) if (n * heads * d > cpu::kParallelMinWork)
    for (int64_t row = 0; row < n; ++row) {
        const int64_t p = pos[row];
        if (p < 0) continue;
        const float* cos_p = table + p * half;
        const float* sin_p = table + (capacity + p) * half;
        for (int64_t h = 0; h < heads; ++h) {
            float* x = data + row * ld + h * d;
            float* y = x + half;
            for (int64_t i = 0; i < half; ++i) {
                const float a = x[i], b = y[i];
                x[i] = a * cos_p[i] - b * sin_p[i];
                y[i] = b * cos_p[i] + a * sin_p[i];
            }
        }
    }
}

void CpuBackend::do_kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions,
                                   const AttentionShape& s)
{
    const int64_t capacity = k_cache.shape[2];
    const int64_t largest = largest_position(positions, s);
    CRUCIBLE_REQUIRE(largest < capacity, "kv_cache_write: position " + std::to_string(largest) +
                                             " is past the cache's " + std::to_string(capacity) + " positions");
    const int64_t n = s.tokens(), d = s.head_dim, ld = s.qkv_dim(), kv_heads = s.n_kv_heads;
    const int32_t* pos = positions.as<int32_t>();
    const float* src = qkv.as<float>();
    float* keys = k_cache.as<float>();
    float* values = v_cache.as<float>();
    const size_t row_bytes = size_t(d) * sizeof(float);
    for (int64_t row = 0; row < n; ++row) {
        const int64_t p = pos[row];
        if (p < 0) continue;
        const int64_t b = row / s.seq;
        for (int64_t kv = 0; kv < kv_heads; ++kv) {
            const int64_t at = ((b * kv_heads + kv) * capacity + p) * d;
            std::memcpy(keys + at, src + row * ld + (s.n_heads + kv) * d, row_bytes);
            std::memcpy(values + at, src + row * ld + (s.n_heads + kv_heads + kv) * d, row_bytes);
        }
    }
}

} // namespace crucible
