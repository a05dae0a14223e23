// CpuBackend: the reference backend. fp32 everywhere, GEMMs through OpenBLAS,
// everything else as OpenMP loops over rows with a static schedule, so results
// are deterministic for a given thread count (bit-exact resume relies on it).
//
// The implementations of Backend's hooks arrive with checked arguments and
// live one file per op family: cpu_backend.cpp (identity, memory, transfers,
// add), cpu_embedding, cpu_linear, cpu_norm, cpu_rope, cpu_attention,
// cpu_mlp, cpu_classifier, cpu_optim, cpu_muon, and for generation
// cpu_kv_cache, cpu_decode_attention and cpu_argmax.
#pragma once

#include "kernels/backend.h"

#include <vector>

namespace crucible {

class CpuBackend final : public Backend {
public:
    explicit CpuBackend(int threads = 0);
    ~CpuBackend() override;

    int threads() const { return m_threads; }

private:
    CRUCIBLE_BACKEND_REQUIRED_HOOKS(CRUCIBLE_BACKEND_OVERRIDE)

    // cos/sin table [positions, head_dim/2] ×2 for positions 0.., grown to
    // cover the largest position asked for so far.
    const float* rope_table_at(int64_t positions, int64_t head_dim, float theta);
    std::vector<float> m_rope_table_at;
    struct RopeAtKey {
        int64_t positions = 0, head_dim = 0;
        float theta = 0.0f;
    } m_rope_at_key;

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
