// Attention entry points: checks, then the implementation for the setting.
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
    CRUCIBLE_CHECK(s.n_heads >= 1 && s.n_kv_heads >= 1 && s.n_heads % s.n_kv_heads == 0,
                   "attention: n_heads must be a multiple of n_kv_heads");
    CRUCIBLE_CHECK(s.head_dim >= 1 && s.head_dim <= 512, "attention: head_dim must be between 1 and 512");
    CRUCIBLE_CHECK(s.seq <= INT32_MAX && s.batch <= 65535 && s.n_heads <= 65535,
                   "attention: shape too large for one launch");
    CRUCIBLE_CHECK(qkv.numel() == s.tokens() * s.qkv_dim(),
                   "attention: qkv " + qkv.shape.str() + " should hold [" + std::to_string(s.tokens()) + ", " +
                       std::to_string(s.qkv_dim()) + "]");
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

void CudaBackend::attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s)
{
    attn::AttnArgs a = make_args(s, qkv);
    CRUCIBLE_CHECK(out.numel() == s.tokens() * s.q_dim(), "attention_forward: out has the wrong size " + out.shape.str());
    CRUCIBLE_CHECK(lse.numel() == s.batch * s.n_heads * s.seq && lse.dtype == DType::f32,
                   "attention_forward: lse must be f32 [B, H, T]");
    CRUCIBLE_CHECK(out.dtype == qkv.dtype, "attention_forward: out and qkv dtypes differ");
    if (s.tokens() == 0) return;
    a.out = out.data;
    a.lse = lse.as<float>();
    if (attention_kind() == AttentionKind::naive) attn::naive_forward(*this, a, qkv.dtype);
    else if (use_flash(a, qkv.dtype, {qkv.data, out.data})) attn::flash_forward(a, m_stream);
    else attn::exact_forward(a, qkv.dtype, m_stream);
}

void CudaBackend::attention_backward(Tensor dqkv, Tensor dout, Tensor qkv, Tensor out, Tensor lse,
                                     const AttentionShape& s)
{
    attn::AttnArgs a = make_args(s, qkv);
    CRUCIBLE_CHECK(dqkv.numel() == qkv.numel() && dout.numel() == s.tokens() * s.q_dim() && out.numel() == dout.numel(),
                   "attention_backward: shapes do not match");
    CRUCIBLE_CHECK(lse.numel() == s.batch * s.n_heads * s.seq && lse.dtype == DType::f32,
                   "attention_backward: lse must be f32 [B, H, T]");
    CRUCIBLE_CHECK(dqkv.dtype == qkv.dtype && dout.dtype == qkv.dtype && out.dtype == qkv.dtype,
                   "attention_backward: dtypes differ");
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
