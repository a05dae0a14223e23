#include "core/generate/kv_cache.h"

#include "kernels/error.h"

#include <string>

namespace crucible {

namespace {

Shape layer_shape(const ModelConfig& c, int64_t max_batch, int64_t max_seq)
{
    return Shape{max_batch, c.n_kv_heads, max_seq, c.resolved_head_dim()};
}

} // namespace

size_t KvCache::plan_bytes(const ModelConfig& config, int64_t max_batch, int64_t max_seq, DType compute)
{
    Arena counter;
    for (int l = 0; l < 2 * config.n_layers; ++l) counter.take(compute, layer_shape(config, max_batch, max_seq));
    return counter.used();
}

KvCache::KvCache(Backend& backend, const ModelConfig& config, int64_t max_batch, int64_t max_seq)
    : m_max_batch(max_batch), m_max_seq(max_seq)
{
    if (max_batch < 1) throw Error("the KV cache needs room for at least one sequence");
    if (max_seq < 1 || max_seq > config.seq_len)
        throw Error("the KV cache length must be between 1 and the model's context of " +
                    std::to_string(config.seq_len) + " tokens, got " + std::to_string(max_seq));
    const DType dt = backend.compute_dtype();
    m_buffer = DeviceBuffer(backend, plan_bytes(config, max_batch, max_seq, dt));
    Arena arena(m_buffer, backend.device());
    for (int l = 0; l < config.n_layers; ++l) {
        m_keys.push_back(arena.take(dt, layer_shape(config, max_batch, max_seq)));
        m_values.push_back(arena.take(dt, layer_shape(config, max_batch, max_seq)));
    }
    m_lengths.assign(size_t(max_batch), 0);
}

void KvCache::set_length(int64_t sequence, int64_t length)
{
    CRUCIBLE_CHECK(sequence >= 0 && sequence < m_max_batch, "KV cache sequence index out of range");
    CRUCIBLE_CHECK(length >= 0 && length <= m_max_seq, "KV cache length out of range");
    m_lengths[size_t(sequence)] = length;
}

void KvCache::clear()
{
    for (auto& n : m_lengths) n = 0;
}

} // namespace crucible
