// KvCache: the keys and values of every token a sequence has seen, per layer,
// so that a decode step runs only the new token through the model.
//
// It stores n_kv_heads (not n_heads) heads per layer: with GQA that is the
// whole memory saving (n_heads / n_kv_heads). One allocation on the model's
// backend, in compute dtype, made once for max_batch sequences × max_seq
// positions. Each layer's keys and values are [max_batch, n_kv_heads,
// max_seq, head_dim], so the keys a query reads are contiguous (the layout
// Backend's decode ops take, kernels/backend.h).
//
// The lengths (tokens held per sequence) live on the host: they decide the
// positions of the next chunk. Rolling back (speculative decoding's rejected
// tokens) is only a shorter length: later writes overwrite the stale slots and
// attention never reads past a row's own position.
#pragma once

#include "core/model/model_config.h"
#include "core/tensor/buffer.h"

#include <cstdint>
#include <vector>

namespace crucible {

class KvCache {
public:
    KvCache(Backend& backend, const ModelConfig& config, int64_t max_batch, int64_t max_seq);

    // Bytes the cache for this configuration takes, without allocating it.
    static size_t plan_bytes(const ModelConfig& config, int64_t max_batch, int64_t max_seq, DType compute);

    int64_t max_batch() const { return m_max_batch; }
    int64_t max_seq() const { return m_max_seq; }
    size_t bytes() const { return m_buffer.bytes(); }

    Tensor keys(int layer) const { return m_keys[size_t(layer)]; }     // [max_batch, KV, max_seq, D]
    Tensor values(int layer) const { return m_values[size_t(layer)]; } // [max_batch, KV, max_seq, D]

    int64_t length(int64_t sequence) const { return m_lengths[size_t(sequence)]; }
    // Keeps the first `length` positions of a sequence (0 empties it).
    void set_length(int64_t sequence, int64_t length);
    void clear();   // every sequence empty

private:
    int64_t m_max_batch, m_max_seq;
    DeviceBuffer m_buffer;
    std::vector<Tensor> m_keys, m_values;
    std::vector<int64_t> m_lengths;
};

} // namespace crucible
