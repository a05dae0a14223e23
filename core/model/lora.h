// LoraAdapters: the low-rank adapters of a fine-tune, their own ParamStore
// (so gradients, AdamW state and checkpoints cover them and nothing of the
// frozen base), and the forward and backward of one adapted projection.
//
// A layer's projections are stacked (q|k|v, gate|up; see ParamLayout), and
// an adapter on k_proj adds to a band of the stacked output's columns. So
// that every product stays a plain GEMM over contiguous tensors, B is kept
// zero-padded to the stack's height: B̃ [stack_rows, r] holds B [out, r] in
// rows [row_begin, row_begin + out) and zeros elsewhere, so
//     out[:, band] += u·Bᵀ   is   out += u·B̃ᵀ.
// The padding rows' gradients are cleared after each backward, which keeps
// them (and their AdamW state) exactly zero; files hold B alone.
#pragma once

#include "core/model/lora_config.h"
#include "core/model/param_store.h"
#include "core/tensor/buffer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace crucible {

// The four GEMMs of a layer, each over a (possibly stacked) weight.
enum class LayerProjection { qkv, o, mlp_in, down };

// One adapted module of one layer, e.g. layer 3's k_proj.
struct LoraBlock {
    std::string module;          // PEFT's name: q_proj ... down_proj
    int layer = 0;
    LayerProjection projection;  // the stacked GEMM it adds to
    const ParamEntry* a = nullptr;   // [r, in]
    const ParamEntry* b = nullptr;   // [stack_rows, r], B in rows [row_begin, row_begin + out)
    int64_t row_begin = 0, out = 0, in = 0;
};

// Adapter parameters of `config` on `base` (Σ r·(in + out) over the blocks).
int64_t lora_parameter_count(const ModelConfig& base, const LoraConfig& config);

class LoraAdapters {
public:
    // with_grads: the adapters train (gradients, dropout); otherwise they
    // only apply. Zero-initialised: call initialize() or load them.
    LoraAdapters(Backend& backend, const ModelConfig& base, const LoraConfig& config, bool with_grads);

    const LoraConfig& config() const { return m_config; }
    const ModelConfig& base_config() const { return m_store->config(); }
    ParamStore& store() const { return *m_store; }
    Backend& backend() const { return m_store->backend(); }
    const std::vector<LoraBlock>& blocks() const { return m_blocks; }
    // The blocks that add to one GEMM of one layer.
    std::vector<const LoraBlock*> blocks_of(int layer, LayerProjection projection) const;

    // PEFT's initialisation (LoraConfig::init) from one seeded generator.
    void initialize(uint64_t seed);
    // Adapter parameters, without the padding: Σ r·(in + out).
    int64_t trainable_parameters() const;

    // A and B of a block as PEFT stores them ([r, in], [out, r]), on the host.
    std::vector<float> download_a(const LoraBlock& b) const;
    std::vector<float> download_b(const LoraBlock& b) const;
    // Sets every block's A and B from host tensors shaped as above
    // (a[i], b[i] for blocks()[i]).
    void upload(const std::vector<std::vector<float>>& a, const std::vector<std::vector<float>>& b);

    // Scratch for up to `tokens` rows per call; the Transformer and
    // CachedForward that apply these adapters reserve their sizes.
    void reserve(int64_t tokens);

    // Dropout masks are drawn from (seed, training forward count, block):
    // resuming restores the count and so the masks.
    void set_dropout_seed(uint64_t seed) { m_dropout_seed = seed; }
    uint64_t dropout_calls() const { return m_dropout_calls; }
    void set_dropout_calls(uint64_t calls) { m_dropout_calls = calls; }
    // Called once per training forward pass, before its blocks run.
    void begin_training_forward() { ++m_dropout_calls; }

    // out += scale · dropout(in)·Aᵀ·B̃ᵀ (dropout only when `training`).
    void forward(const LoraBlock& b, Tensor out, Tensor in, bool training);
    // Gradients of forward(b, out, in, training) for the same `in`: dA and
    // dB accumulate, din += the input gradient.
    void backward(const LoraBlock& b, Tensor din, Tensor dout, Tensor in, bool training);

    // W += scale · B·A for every block, into the base's master weights (then
    // the compute copy): the merged model computes what base + adapters do.
    void merge_into(ParamStore& base) const;

private:
    uint64_t block_seed(const LoraBlock& b) const;
    bool drops(bool training) const { return training && m_config.dropout > 0.0f; }

    LoraConfig m_config;
    std::unique_ptr<ParamStore> m_store;
    std::vector<LoraBlock> m_blocks;
    DeviceBuffer m_scratch;
    int64_t m_scratch_tokens = 0;
    Tensor m_u, m_du, m_x, m_dx;   // [N, r], [N, r], [N, max in], [N, max in]
    uint64_t m_dropout_seed = 0;
    uint64_t m_dropout_calls = 0;
};

} // namespace crucible
