// CachedForward: the Transformer's forward pass over new tokens only, reading
// and extending a KvCache. Inference only; the training path in
// core/model/transformer.* is untouched and stays the reference this one is
// tested against (tst_generation: equal logits at every position).
//
// One call runs a chunk of B sequences × T new tokens. Each sequence
// continues where its cache ends (positions = cache length + t) and may use
// fewer than T rows (the rest is padding) or none, so a single call serves a
// batched prompt of ragged lengths, a decode step of one token per sequence
// or a speculative verification chunk; decode_greedy chains several greedy
// decode steps in one submission. A chunk that starts every sequence
// from an empty cache runs the training path's (flash) attention over its own
// keys; every other chunk attends over the cache (Backend::attention_decode).
//
// Same weights (ParamStore, the stacked qkv and MLP-input views) and the same
// backend ops as Transformer; the activation buffers are sized once for
// max_tokens rows (batch × chunk) and max_logit_rows rows of logits, and
// reused by every layer.
#pragma once

#include "core/generate/kv_cache.h"
#include "core/model/param_store.h"
#include "core/model/projection.h"
#include "core/tensor/buffer.h"

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <span>
#include <vector>

namespace crucible {

class CachedForward {
public:
    // With `lora`, its adapters add to the projections (unmerged: a layer
    // whose projection has adapters runs the separate ops instead of the
    // fused ones; merge them into the base for full decode speed). With
    // `nf4`, the projections are its NF4 weights (the fused NF4 GEMV for
    // decode rows) and `params` holds the rest (nf4_base_layout).
    CachedForward(ParamStore& params, KvCache& cache, int64_t max_tokens, int64_t max_logit_rows,
                  LoraAdapters* lora = nullptr, const Nf4Base* nf4 = nullptr);
    ~CachedForward();
    CachedForward(const CachedForward&) = delete;
    CachedForward& operator=(const CachedForward&) = delete;

    // Chunks of up to this many tokens per sequence that continue a cache
    // (decode steps, speculative verification) are replayed as graphs.
    static constexpr int64_t kGraphSeq = 17;
    // The most greedy decode steps one submission runs (decode_greedy).
    static constexpr int64_t kMaxDecodeBurst = 16;

    // How decode steps (one token per sequence) and other short chunks run;
    // all on by default. Turning one off is for measuring what it buys
    // (bench generate).
    struct Speedups {
        bool graphs = true;          // replay a captured graph where the backend can (CUDA)
        bool fused_kernels = true;   // the backend's fused decode ops (RMSNorm into the
                                     // projections, RoPE and the cache write, SwiGLU)
        // Greedy decode steps per submission (decode_greedy): 0 picks 8 on a
        // GPU, where it saves a launch and a wait per token, and 1 (no
        // bursts) on the CPU, where the host is the device and bursts would
        // only delay streaming.
        int decode_burst = 0;
    };
    void set_speedups(const Speedups& s);
    const Speedups& speedups() const { return m_speedups; }
    // decode_burst resolved for this backend: 1 to kMaxDecodeBurst.
    int64_t decode_burst() const;

    const ModelConfig& config() const { return m_params->config(); }
    ParamStore& params() const { return *m_params; }
    KvCache& cache() const { return *m_cache; }
    Backend& backend() const { return m_params->backend(); }
    int64_t max_tokens() const { return m_max_tokens; }
    int64_t max_logit_rows() const { return m_max_logit_rows; }
    size_t bytes() const { return m_buffer.bytes(); }   // activations (the cache counts its own)

    // Appends a chunk: tokens [B·T] row-major (B = counts.size(), T = seq);
    // sequence b takes its first counts[b] rows (0 ≤ counts[b] ≤ T; padding
    // rows may hold any id) and its cache length grows by counts[b]. `logits`
    // receives [R, vocab] (host, f32): the next-token logits after each row
    // listed in logit_rows (indices b·T + t of non-padding rows). Throws Error
    // when a sequence would outgrow the cache.
    void append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                std::span<const int64_t> logit_rows, std::vector<float>& logits);
    // The same, and top_probs[i] receives the probability of row i's most
    // likely token, 1 / Σ exp(l − max), which the device computes with the
    // step (Backend::argmax_rows): a token's probability is then
    // top_probs[i]·exp(l_token − max), without a pass over the vocabulary.
    void append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                std::span<const int64_t> logit_rows, std::vector<float>& logits, std::vector<float>& top_probs);
    // The same, for greedy decoding: instead of logits, ids[i] receives the
    // most likely next token after row logit_rows[i] and probs[i] its
    // probability, picked on the device (Backend::argmax_rows).
    void append_greedy(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                       std::span<const int64_t> logit_rows, std::vector<int32_t>& ids, std::vector<float>& probs);
    // Greedy decoding of `steps` tokens for each of B = tokens.size()
    // sequences in one submission (a decode burst): tokens[b] runs first,
    // and each step's picks are the next step's tokens on the device, so
    // the host launches once and waits once. ids and probs receive
    // [steps × B], step-major. Every sequence grows by `steps`, so each must
    // continue a non-empty cache with room for them.
    void decode_greedy(std::span<const int32_t> tokens, int64_t steps, std::vector<int32_t>& ids,
                       std::vector<float>& probs);

private:
    struct LayerParams {
        const ParamEntry *attn_norm, *attn_norm_bias, *q_norm, *k_norm;
        const ParamEntry *mlp_norm, *mlp_norm_bias;
        LayerProjections proj;
    };
    void norm_forward(Tensor out, Tensor x, const ParamEntry& weight, const ParamEntry* bias, int64_t n);
    // Whether a chunk of this shape may take the backend's fused decode ops.
    bool may_fuse(bool from_empty_cache) const;
    struct Chunk {
        int64_t batch = 0, seq = 0, logit_rows = 0;
        bool from_empty_cache = true, every_row = false, pick = false;
        // Views of m_inputs for this chunk, packed: tokens [n], positions [n],
        // logit rows [r] (only when not every row); `inputs` spans them all.
        Tensor inputs, tokens, positions, logit_index;
        // In m_host_picks: the picks' ids [r] and probabilities [r].
        Tensor pick_ids, pick_probs;
        // In a decode burst, the next step's token slots in m_inputs, which
        // the picks fill on the device.
        Tensor next_tokens;
    };
    void run_layers(const Chunk& chunk);
    void compute_logits(const Chunk& chunk, bool fused);
    // Checks a chunk and writes its tokens, positions and logit rows to the
    // pinned input block; the device work uploads them.
    Chunk prepare_chunk(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                        std::span<const int64_t> logit_rows);
    // Throws unless sequence b's cache has room for `count` more tokens.
    void check_room(int64_t b, int64_t count) const;
    void check_token(int32_t id) const;
    // Waits until the previous submission has read the pinned input block.
    void release_inputs();
    // Uploads the input block (steps[0].inputs spans it) and runs the chunks
    // in order, replaying a graph where the shape repeats.
    void run_device_work(std::span<const Chunk> steps);
    // What append and append_greedy share: one chunk, then whichever of the
    // logits and the device's picks are asked for.
    void run_append(std::span<const int32_t> tokens, std::span<const int64_t> counts, int64_t seq,
                    std::span<const int64_t> logit_rows, std::vector<float>* logits, std::vector<int32_t>* pick_ids,
                    std::vector<float>* pick_probs);
    void run_chunk(const Chunk& chunk);
    void drop_graphs();

    ParamStore* m_params;
    KvCache* m_cache;
    int64_t m_max_tokens, m_max_logit_rows;
    std::vector<LayerParams> m_layer_params;
    const ParamEntry *m_embedding, *m_final_norm, *m_final_norm_bias, *m_head;

    DeviceBuffer m_buffer;
    Tensor m_x;                       // [N, C] residual stream
    Tensor m_norm_out, m_rstd, m_mean;   // [N, C], [N], [N] (mean: LayerNorm only)
    Tensor m_qkv_raw, m_qk_rstd;      // QK-norm only: [N, QKV], [N, H + KV]
    Tensor m_qkv;                     // [N, QKV]
    Tensor m_attn_out, m_lse;         // [N, H·D], [N·H] (flash attention of a first chunk)
    Tensor m_mlp_in, m_mlp_act;       // [N, mlp_in_dim], [N, F]
    Tensor m_logit_x, m_logit_norm;   // [R, C]
    Tensor m_logits;                  // [R, V]
    // A chunk's inputs travel in one queued copy from page-locked host
    // memory, and greedy picks are written straight into it, both inside the
    // decode graph: a decode step costs one graph launch and one wait.
    Tensor m_inputs;                  // [2N + R] i32: tokens, positions, logit rows; a burst
                                      // holds tokens and positions per step
    HostBuffer m_host_inputs;         // the same, on the host
    HostBuffer m_host_picks;          // [R] i32 ids, then [R] f32 probabilities (R: every
                                      // chunk's logit rows, or steps × batch of a burst)
    bool m_inputs_in_flight = false;  // a queued upload may still read m_host_inputs

    using GraphKey = std::array<int64_t, 6>;   // batch, seq, logit rows, every row, pick, steps
    Speedups m_speedups;
    uint64_t m_graph_epoch = 0;   // the backend's graph_epoch() the graphs were captured under
    std::set<GraphKey> m_warmed;
    std::map<GraphKey, int64_t> m_graphs;
};

} // namespace crucible
