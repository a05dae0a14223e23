// Attention entry points: this backend's limits, then the implementation for
// the setting.
//   naive kind              -> attention_naive.cu (scores in memory)
//   bf16, head dim built in -> attention_flash_*.cu (tensor cores)
//   otherwise (f32 parity mode, other head dims) -> attention_exact.cu
// All three produce the same lse convention (natural log of Σ exp(scale·qk)),
// so any backward accepts any forward's output.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_backend.h"

#include <cmath>

namespace crucible {

using namespace cuda;

namespace {

attn::AttnArgs make_args(const AttentionShape& s, const Tensor& qkv)
{
    CRUCIBLE_REQUIRE(s.head_dim <= 512, "attention on CUDA takes head_dim up to 512, got " +
                                            std::to_string(s.head_dim));
    CRUCIBLE_REQUIRE(s.seq <= INT32_MAX && s.batch <= 65535 && s.n_heads <= 65535,
                     "attention on CUDA takes up to 65535 sequences of 65535 heads in one call");
    attn::AttnArgs a;
    a.qkv = qkv.data;
    a.B = int(s.batch);
    a.T = int(s.seq);
    a.H = int(s.n_heads);
    a.KV = int(s.n_kv_heads);
    a.D = int(s.head_dim);
    a.scale = float(1.0 / std::sqrt(double(s.head_dim)));
    return a;
}

bool use_flash(const attn::AttnArgs& a, DType dtype, std::initializer_list<const void*> ptrs)
{
    if (dtype != DType::bf16 || !attn::flash_supported(a.D)) return false;
    for (const void* p : ptrs)
        if (!aligned16(p)) return false;
    return true;
}

} // namespace

void CudaBackend::do_attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s)
{
    attn::AttnArgs a = make_args(s, qkv);
    if (s.tokens() == 0) return;
    a.out = out.data;
    a.lse = lse.as<float>();
    if (attention_kind() == AttentionKind::naive) attn::naive_forward(*this, a, qkv.dtype);
    else if (use_flash(a, qkv.dtype, {qkv.data, out.data})) attn::flash_forward(a, m_stream);
    else attn::exact_forward(a, qkv.dtype, m_stream);
}

void CudaBackend::do_attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,
                                        const AttentionShape& s)
{
    attn::AttnArgs a = make_args(s, qkv);
    if (s.tokens() == 0) return;
    a.out = nullptr;
    a.fwd_out = out.data;
    a.lse = lse.as<float>();
    a.dout = dout.data;
    a.dqkv = dqkv.data;
    if (attention_kind() == AttentionKind::naive) {
        attn::naive_backward(*this, a, qkv.dtype);   // plans its own scratch, delta included
        return;
    }
    a.delta = static_cast<float*>(scratch(sizeof(float) * size_t(s.batch * s.n_heads * s.seq)));
    attn::attention_delta(a, qkv.dtype, m_stream);
    if (use_flash(a, qkv.dtype, {qkv.data, dqkv.data, dout.data})) attn::flash_backward(a, m_stream);
    else attn::exact_backward(a, qkv.dtype, m_stream);
}

} // namespace crucible
