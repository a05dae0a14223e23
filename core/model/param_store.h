// ParamStore: the model's parameters, their gradients and (on backends that
// compute in bf16) a compute-dtype mirror of the weights, each one buffer laid
// out by ParamLayout.
#pragma once

#include "core/model/param_layout.h"
#include "core/tensor/buffer.h"

#include <cstdint>
#include <vector>

namespace crucible {

class ParamStore {
public:
    // keep_master false (a frozen base: no gradients) keeps the weights in the
    // compute dtype alone, with no f32 master copy where the two differ:
    // upload_master() rounds into the compute copy, download_master() reads it
    // back, master() is empty. (On an f32 backend both are one buffer anyway.)
    ParamStore(Backend& backend, const ModelConfig& config, bool with_grads, bool keep_master = true);
    // A store of other tensors (adapters) laid out by `layout`.
    ParamStore(Backend& backend, ParamLayout layout, bool with_grads, bool keep_master = true);

    Backend& backend() const { return *m_backend; }
    const ParamLayout& layout() const { return m_layout; }
    const ModelConfig& config() const { return m_layout.config(); }

    Tensor master() const { return m_master; }    // f32 [total]; empty without a master copy
    Tensor compute() const { return m_compute; }  // compute dtype [total]; aliases master in f32
    Tensor grads() const { return m_grads; }      // f32 [total]; empty without grads

    Tensor master(const ParamEntry& e) const { return param_view(m_master, e); }
    Tensor compute(const ParamEntry& e) const { return param_view(m_compute, e); }
    Tensor grad(const ParamEntry& e) const { return param_view(m_grads, e); }

    // N(0, init_std) for matrices, with o_proj and down_proj scaled by
    // 1/sqrt(2·n_layers); norm weights 1, biases 0. Drawn on the host from one
    // seeded generator, so every backend starts from the same weights.
    void initialize(uint64_t seed);
    void zero_grads();
    // Refresh the compute mirror after the master weights changed outside an
    // optimizer step (initialisation, loading).
    void sync_compute();

    std::vector<float> download_master() const;
    void upload_master(const std::vector<float>& host);
    std::vector<float> download_grads() const;

    size_t bytes() const;   // everything this store allocated

private:
    Backend* m_backend;
    ParamLayout m_layout;
    DeviceBuffer m_master_buffer, m_compute_buffer, m_grad_buffer;
    Tensor m_master, m_compute, m_grads;
};

} // namespace crucible
