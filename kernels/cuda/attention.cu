// Attention entry points: this backend's limits, then the implementation for
// the setting.
//   naive kind              -> attention_naive.cu (scores in memory)
//   bf16, head dim built in -> attention_flash_*.cu (tensor cores); the
//                              forward on a 9.0 device -> attention_hopper_fwd_sm90a.cu
//   otherwise (f32 parity mode, other head dims) -> attention_exact.cu
// All three produce the same lse convention (natural log of Σ exp(scale·qk)),
// so any backward accepts any forward's output.
#include "kernels/cuda/attention_common.cuh"
#include "kernels/cuda/cuda_backend.h"
#if CRUCIBLE_HOPPER_ATTENTION
#include "kernels/cuda/attention_hopper.h"
#endif

#include <cmath>
#include <cstdlib>
#include <cstring>

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

// Whether AttentionKind::flash takes the Hopper forward where it can. The
// environment overrides it for side-by-side timing:
// CRUCIBLE_FLASH_ATTENTION=hopper or =portable.
constexpr bool kHopperByDefault = false;

bool hopper_by_default()
{
    const char* env = std::getenv("CRUCIBLE_FLASH_ATTENTION");
    if (env && std::strcmp(env, "hopper") == 0) return true;
    if (env && std::strcmp(env, "portable") == 0) return false;
    return kHopperByDefault;
}

// The Hopper forward for this call? flash_hopper and flash_portable decide;
// flash follows hopper_by_default(). Only a 9.0 device runs the sm_90a code.
bool use_hopper_forward(const cudaDeviceProp& props, AttentionKind kind, int head_dim)
{
#if CRUCIBLE_HOPPER_ATTENTION
    if (kind == AttentionKind::flash_portable || props.major != 9 || props.minor != 0 ||
        !attn::hopper_forward_supported(head_dim))
        return false;
    return kind == AttentionKind::flash_hopper || hopper_by_default();
#else
    (void)props, (void)kind, (void)head_dim;
    return false;
#endif
}

} // namespace

std::string hopper_attention_detail(const cudaDeviceProp& props)
{
#if CRUCIBLE_HOPPER_ATTENTION
    if (props.major != 9 || props.minor != 0) return "no (needs compute capability 9.0)";
    if (!attn::hopper_forward_supported(64)) return "no (the driver cannot encode tensor maps)";
    return hopper_by_default() ? "yes: forward, head dims 64 and 128, the default"
                               : "yes: forward, head dims 64 and 128, off unless CRUCIBLE_FLASH_ATTENTION=hopper";
#else
    (void)props;
    return "no (not built)";
#endif
}

void CudaBackend::do_attention_forward(Tensor out, Tensor lse, Tensor qkv, const AttentionShape& s)
{
    attn::AttnArgs a = make_args(s, qkv);
    if (s.tokens() == 0) return;
    a.out = out.data;
    a.lse = lse.as<float>();
    if (attention_kind() == AttentionKind::naive) attn::naive_forward(*this, a, qkv.dtype);
    else if (use_flash(a, qkv.dtype, {qkv.data, out.data})) {
#if CRUCIBLE_HOPPER_ATTENTION
        if (use_hopper_forward(m_props, attention_kind(), a.D)) {
            attn::hopper_forward(a, m_stream);
            return;
        }
#endif
        attn::flash_forward(a, m_stream);
    }
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
