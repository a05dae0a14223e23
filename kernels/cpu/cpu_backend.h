// CpuBackend: the reference backend. fp32 everywhere, GEMMs through OpenBLAS,
// everything else as OpenMP loops over rows with a static schedule, so results
// are deterministic for a given thread count (bit-exact resume relies on it).
#pragma once

#include "kernels/backend.h"

#include <vector>

namespace crucible {

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(int threads = 0);
    ~CpuBackend() override;

    int threads() const { return m_threads; }

    DeviceKind device() const override { return DeviceKind::cpu; }
    DType compute_dtype() const override { return DType::f32; }
    std::string name() const override;
    DeviceFacts facts() const override;
    MemoryInfo memory_info() const override;

    void* allocate(size_t bytes) override;
    void deallocate(void* ptr) override;
    void synchronize() override {}
    void upload(Tensor dst, const void* host_src, DType host_dtype) override;
    void download(void* host_dst, DType host_dtype, Tensor src) override;
    void convert(Tensor dst, Tensor src) override;
    void fill(Tensor dst, float value) override;

    void add(Tensor out, Tensor a, Tensor b) override;

    void embedding_forward(Tensor out, Tensor tokens, Tensor table) override;
    void embedding_backward(Tensor dtable, Tensor tokens, Tensor dout) override;

    void linear_forward(Tensor out, Tensor in, Tensor weight, bool accumulate) override;
    void linear_backward(Tensor din, Tensor dweight, Tensor dout, Tensor in, Tensor weight,
                         bool accumulate_din) override;

    void rmsnorm_forward(Tensor out, Tensor rstd, Tensor x, Tensor weight, float eps) override;
    void rmsnorm_backward(Tensor dx, Tensor dweight, Tensor dout, Tensor x, Tensor weight, Tensor rstd,
                          bool accumulate_dx) override;
    void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor x, Tensor weight, Tensor bias,
                           float eps) override;
    void layernorm_backward(Tensor dx, Tensor dweight, Tensor dbias, Tensor dout, Tensor x, Tensor weight,
                            Tensor mean, Tensor rstd, bool accumulate_dx) override;

    void qk_norm_forward(Tensor qkv_out, Tensor rstd, Tensor qkv_in, Tensor q_weight, Tensor k_weight,
                         const AttentionShape& s, float eps) override;
    void qk_norm_backward(Tensor dqkv_in, Tensor dq_weight, Tensor dk_weight, Tensor dqkv_out,
                          Tensor qkv_in, Tensor q_weight, Tensor k_weight, Tensor rstd,
                          const AttentionShape& s) override;
    void rope_forward(Tensor qkv, const AttentionShape& s, int64_t pos_offset, float theta) override;
    void rope_backward(Tensor dqkv, const AttentionShape& s, int64_t pos_offset, float theta) override;
    void attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s) override;
    void attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,
                            const AttentionShape& s) override;

    void swiglu_forward(Tensor out, Tensor gate_up) override;
    void swiglu_backward(Tensor dgate_up, Tensor dout, Tensor gate_up) override;
    void gelu_forward(Tensor out, Tensor in) override;
    void gelu_backward(Tensor din, Tensor dout, Tensor in) override;

    void softmax_cross_entropy(Tensor losses, Tensor correct, Tensor logits, Tensor targets,
                               float grad_scale, bool compute_grad) override;

    double sum_squares(Tensor x) override;
    void adamw_step(Tensor param, Tensor param_compute, Tensor grad, Tensor m, Tensor v,
                    const AdamWHyper& h) override;
    void muon_step(Tensor param, Tensor param_compute, Tensor grad, Tensor momentum, int64_t count,
                   int64_t stride, const MuonHyper& h) override;
    void newton_schulz(Tensor out, Tensor in, int steps) override;

    // ==== generation (KV cache): cpu_kv_cache.cpp, cpu_decode_attention.cpp, cpu_argmax.cpp ====
    void rope_forward_at(Tensor qkv, const AttentionShape& s, Tensor positions, float theta) override;
    void kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor qkv, Tensor positions,
                        const AttentionShape& s) override;
    void attention_decode(Tensor out, Tensor qkv, Tensor k_cache, Tensor v_cache, Tensor positions,
                          const AttentionShape& s) override;
    void argmax_rows(Tensor ids, Tensor probs, Tensor logits, Tensor next_tokens) override;

private:
    // cos/sin table [positions, head_dim/2] ×2 for positions 0.., grown to
    // cover the largest position asked for so far.
    const float* rope_table_at(int64_t positions, int64_t head_dim, float theta);
    std::vector<float> m_rope_table_at;
    struct RopeAtKey {
        int64_t positions = 0, head_dim = 0;
        float theta = 0.0f;
    } m_rope_at_key;
    // ==== end of generation ====

private:
    // Scratch for the ops' own temporaries (per-thread partial sums, attention
    // tiles), grown on demand and kept. Separate from Backend::workspace(),
    // which callers use to hold data across op calls.
    float* scratch(size_t floats);
    // cos/sin table [seq, head_dim/2] ×2 for positions pos_offset.., reused
    // while the arguments repeat (every layer of every training step).
    const float* rope_table(int64_t pos_offset, int64_t seq, int64_t head_dim, float theta);

    int m_threads = 1;
    void* m_scratch = nullptr;
    size_t m_scratch_bytes = 0;
    std::vector<float> m_rope_table;
    struct RopeKey {
        int64_t pos_offset = -1, seq = 0, head_dim = 0;
        float theta = 0.0f;
    } m_rope_key;
};

} // namespace crucible
